import Foundation
import Testing

@testable import MultipackKit

/// SPEC §6's path limits: deep, long, non-UTF-8, colliding and looping members are refused
/// promptly, naming the member.
@Suite struct PathLimitTests {
    private func seconds(_ body: () throws -> Void) rethrows -> Double {
        let start = ContinuousClock.now
        try body()
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    @Test func aPaxPath40000DirectoriesDeepIsRefusedAtOnce() throws {
        let box = try Sandbox()
        var tar = RawTar()
        tar.pax([("path", String(repeating: "d/", count: 40_000) + "f")])
        tar.file("placeholder", "x")
        tar.end()
        let archive = try box.gzip(tar.bytes)
        var error: ArchiveError?
        let elapsed = try seconds { error = try box.refusal(archive) }
        #expect(elapsed < 1, "took \(elapsed) s")
        #expect(error?.kind == .unsafeMember)
        #expect(error?.description.hasPrefix("Refused archive member 'd/d/d/") == true)
        #expect(error?.description.contains("…") == true)
        #expect((error?.description.utf8.count ?? .max) < 400)
        #expect(try FileManager.default.contentsOfDirectory(atPath: box.dest).isEmpty)
    }

    @Test func deeperThan256ComponentsIsRefused() throws {
        let box = try Sandbox()
        var tar = RawTar()
        tar.pax([("path", String(repeating: "d/", count: 257) + "f")])
        tar.file("placeholder", "x")
        tar.end()
        #expect(try box.refusal(tar.bytes)?.description.contains("deeper than 256") == true)

        var ok = RawTar()
        ok.pax([("path", String(repeating: "d/", count: 255) + "f")])
        ok.file("placeholder", "x")
        ok.end()
        let path = try box.write("ok.tar", ok.bytes)
        #expect(try extractArchive(atPath: path, into: box.dest).entries == 1)
    }

    @Test func aPathLongerThanPathMaxIsRefused() throws {
        let box = try Sandbox()
        var tar = RawTar()
        let name = String(repeating: "n", count: 200)
        tar.pax([("path", Array(repeating: name, count: 21).joined(separator: "/"))])
        tar.file("placeholder", "x")
        tar.end()
        let error = try box.refusal(tar.bytes)
        #expect(error?.description.contains("more than the 4096 allowed") == true)
    }

    @Test func aNameThatIsNotUTF8IsRefused() throws {
        let box = try Sandbox()
        var tar = RawTar()
        tar.file("bad-name", "x")
        tar.end()
        var bytes = tar.bytes
        bytes[3] = 0xff
        for i in 148..<156 { bytes[i] = 0x20 }
        let sum = String(bytes[0..<512].reduce(0) { $0 + Int($1) }, radix: 8)
        for (i, digit) in (String(repeating: "0", count: 6 - sum.count) + sum + "\0").utf8.enumerated() {
            bytes[148 + i] = digit
        }
        let error = try box.refusal(bytes)
        #expect(error?.kind == .unsafeMember)
        #expect(error?.description.contains("not valid UTF-8") == true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: box.dest).isEmpty)
    }

    @Test func twoMembersOfDifferentTypesOnOnePathAreRefused() throws {
        let box = try Sandbox()
        var tar = RawTar()
        tar.file("bin/run", "x")
        tar.add("bin/run", type: "2", link: "../lib")
        tar.end()
        let error = try box.refusal(tar.bytes)
        #expect(error?.description.contains("'bin/run'") == true)
        #expect(error?.description.contains("an earlier member put a file at this path") == true)
    }

    @Test func aSymlinkLoopIsReportedAsALoop() throws {
        let box = try Sandbox()
        var tar = RawTar()
        tar.add("a", type: "2", link: "b")
        tar.add("b", type: "2", link: "a")
        tar.end()
        let error = try box.refusal(tar.bytes)
        #expect(error?.description.contains("symlink loop") == true)
    }

    @Test func aDeepSymlinkTargetIsRefusedAtOnce() throws {
        let box = try Sandbox()
        var tar = RawTar()
        tar.pax([("linkpath", String(repeating: "x/", count: 20_000) + "y")])
        tar.add("link", type: "2", link: "placeholder")
        tar.end()
        var error: ArchiveError?
        let elapsed = try seconds { error = try box.refusal(tar.bytes) }
        #expect(elapsed < 1, "took \(elapsed) s")
        #expect(error?.description.contains("'link'") == true)
        #expect(error?.description.contains("4096 bytes or 256 components") == true)
    }

    /// Many symlinks each pointing through the previous one: resolution stays bounded.
    @Test func aChainOfSymlinksIsBoundedByTheHopLimit() throws {
        let box = try Sandbox()
        var tar = RawTar()
        tar.add("d/", type: "5")
        tar.add("l0", type: "2", link: "d")
        for i in 1...60 { tar.add("l\(i)", type: "2", link: "l\(i - 1)") }
        tar.end()
        let error = try box.refusal(tar.bytes)
        #expect(error?.description.contains("symlink loop") == true)
    }
}
