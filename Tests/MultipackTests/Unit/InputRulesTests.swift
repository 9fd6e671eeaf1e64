import Foundation
import Testing

@testable import MultipackKit

/// SPEC §4 and §10: bad bytes in .buildpacks, bounded integers, one trimming rule.
@Suite struct InputRulesTests {
    private func listError(_ bytes: [UInt8]) -> BuildpackListError? {
        do {
            _ = try BuildpackList.parse(bytes: bytes)
            Issue.record("accepted")
            return nil
        } catch {
            return error
        }
    }

    @Test func aNULByteIsABadLineNotACutURL() {
        let error = listError(Array("heroku/python\nhttps://h.example/x.git\0--upload-pack=evil\n".utf8))
        #expect(error?.line == 2)
        #expect(error?.reason == "it holds a NUL byte")
        #expect(error?.text == "https://h.example/x.git\\x00--upload-pack=evil")
    }

    @Test func invalidUTF8IsABadLineNeverReplaced() {
        let error = listError(Array("heroku/python\n".utf8) + [0x68, 0x65, 0xff, 0x2f, 0x78, 0x0a])
        #expect(error?.line == 2)
        #expect(error?.reason == "it is not valid UTF-8")
    }

    @Test func aControlCharacterIsABadLine() {
        let error = listError(Array("heroku/py\u{1b}[31mthon\n".utf8))
        #expect(error?.reason == "it holds a control character")
        #expect(error?.text.contains("\u{1b}") == false)
    }

    @Test func aHugeBadLineIsEchoedCutTo200Characters() {
        let error = listError(
            Array(("https://u:SECRET@h.example/" + String(repeating: "x", count: 1 << 20) + " bad\n").utf8))
        #expect(error != nil)
        #expect((error?.text.count ?? .max) <= 201)
        #expect(error?.text.contains("SECRET") == false)
    }

    @Test func aBOMAndCRLFStillWork() throws {
        let entries = try BuildpackList.parse(
            bytes: [0xef, 0xbb, 0xbf] + Array("heroku/python\r\n\theroku/nodejs \r\n".utf8))
        #expect(entries.map(\.text) == ["heroku/python", "heroku/nodejs"])
    }

    @Test(arguments: ["9223372036854775807", "0", "86401", "-1", "99999999999999999999999", "12s"])
    func fetchTimeoutOutsideItsBoundsIsBadInput(_ value: String) {
        expectUsageError {
            _ = try Settings(configVars: ["MULTIPACK_FETCH_TIMEOUT": value], environment: [:])
        }
    }

    @Test func everyVariableIsTrimmedTheSameWay() throws {
        let settings = try Settings(
            configVars: ["MULTIPACK_FETCH_TIMEOUT": " 86400 \n", "MULTIPACK_RELEASE": "\tlast \r\n"],
            environment: ["MULTIPACK_HOOKS": "  children ", "MULTIPACK_REGISTRY_URL": " https://r.example/bp/ \n"])
        #expect(settings.fetchTimeout == 86_400)
        #expect(settings.release == .last)
        #expect(settings.hooks == .children)
        #expect(settings.registryArchiveURL(namespace: "a", name: "b") == "https://r.example/bp/a/b.tgz")
    }

    @Test func aRegistryURLWithAQueryKeepsItAfterThePath() throws {
        let settings = try Settings(
            configVars: ["MULTIPACK_REGISTRY_URL": "https://r.example/bp/?X-Sig=abc&e=1"], environment: [:])
        #expect(
            settings.registryArchiveURL(namespace: "heroku", name: "python")
                == "https://r.example/bp/heroku/python.tgz?X-Sig=abc&e=1")
    }
}

@Suite struct BuildpacksFileKindTests {
    @Test(arguments: ["directory", "fifo"])
    func aBuildpacksThatIsNotAFileIsBadInputAndNeverBlocks(_ kind: String) throws {
        let temp = try TempDir("list-kind")
        let app = try App(nil, in: temp, buildpacks: nil)
        let list = app.build + "/.buildpacks"
        if kind == "directory" {
            try FileManager.default.createDirectory(atPath: list, withIntermediateDirectories: false)
        } else {
            #expect(mkfifo(list, 0o644) == 0)
        }
        let mp = try Multipack(in: temp)
        // `timeout` turns a block into a failure instead of a hung suite.
        for (verb, arguments) in [("compile", [app.build, app.cache, app.env]), ("detect", [app.build])] {
            let result = try Shell.run(
                "timeout", ["20", mp.dir + "/bin/" + verb] + arguments,
                environment: Multipack.environment(["TMPDIR": temp.sub("tmp")]))
            // detect only looks (it is there: Multipack); compile refuses it as bad input.
            #expect(result.status == (verb == "detect" ? 0 : 2), "\(verb): \(result.all)")
            if verb == "compile" {
                #expect(
                    result.stderr.contains(
                        kind == "fifo" ? "a FIFO (named pipe), not a file" : "a directory, not a file"))
            }
        }
    }
}
