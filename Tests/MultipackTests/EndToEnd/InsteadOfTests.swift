import Foundation
import Testing

@testable import MultipackKit

/// SPEC §5: the GitHub tarball stands in for a clone only where git itself would fetch from
/// GitHub; git's `url.<base>.insteadOf` (a mirror) is honoured. SPEC §9: warnings on stderr.
@Suite struct InsteadOfTests {
    @Test func aMirrorInGitsConfigIsUsedInsteadOfTheTarball() throws {
        let temp = try TempDir("insteadof")
        let repo = try gitChild("node", in: temp)
        let (routes, commit) = try GitHubArchiveTests.routes(for: repo, name: "node", in: temp)
        let server = try LoopbackHTTPServer(routes: routes)
        defer { server.stop() }
        let app = try App("python-node", in: temp, buildpacks: server.url("/org/node.git#main") + "\n")
        let mp = try Multipack(in: temp)
        // The mirror: the same repository on this machine, which git reads instead of "GitHub".
        let env = [
            "MULTIPACK_GITHUB_URL": server.url(""), "TMPDIR": temp.sub("tmp"), "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "url.file://\(repo).insteadOf", "GIT_CONFIG_VALUE_0": server.url("/org/node.git"),
        ]
        let compile = try mp.shim("compile", [app.build, app.cache, app.env], environment: env)
        #expect(compile.status == 0, "\(compile.all)")
        #expect(compile.stdout.contains("@ \(commit.prefix(12)) (cloned,"), "\(compile.stdout)")
        #expect(server.requestCount("/org/node/archive/\(commit).tar.gz") == 0, "no tarball from GitHub")
        #expect(compile.stdout.contains("Installing node (fixture)"))
    }

    @Test func warningsGoToStderrSetOffByBlankLines() {
        final class Sink: @unchecked Sendable {
            var written: [(String, Int32)] = []
        }
        let sink = Sink()
        let log = Log(write: { sink.written.append(($0, $1)) })
        log.warning("first line https://user:secret@example.com/a.tgz\nsecond line")
        #expect(sink.written.count == 1)
        let (text, descriptor) = sink.written[0]
        #expect(descriptor == 2)
        #expect(text == "\n !     first line https://***@example.com/a.tgz\n !     second line\n\n")
    }
}
