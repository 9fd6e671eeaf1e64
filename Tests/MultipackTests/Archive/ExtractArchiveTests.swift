import Foundation
import Testing

@testable import MultipackKit

/// A small buildpack: a script with its exec bit, a plain file, a symlink and a hard link.
private func sampleTar() -> [UInt8] {
    var tar = RawTar()
    tar.add("bin/", type: "5", mode: 0o755)
    tar.file("bin/compile", "#!/bin/sh\necho compiling\n", mode: 0o775)
    tar.file("lib/data.txt", "data\n", mode: 0o664)
    tar.add("lib/link", type: "2", link: "data.txt")
    tar.add("lib/hard", type: "1", link: "lib/data.txt")
    tar.end()
    return tar.bytes
}

@Suite struct ExtractArchiveTests {
    private func checkSample(_ box: Sandbox, _ summary: ExtractionSummary) throws {
        #expect(summary.entries == 5)
        #expect(summary.bytes == 30)
        #expect(try box.read(box.dest + "/bin/compile") == "#!/bin/sh\necho compiling\n")
        #expect(try box.mode(box.dest + "/bin/compile") == 0o755)
        #expect(try box.mode(box.dest + "/lib/data.txt") == 0o644)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: box.dest + "/lib/link") == "data.txt")
        #expect(try box.read(box.dest + "/lib/hard") == "data\n")
    }

    @Test func plainTar() throws {
        let box = try Sandbox()
        let path = try box.write("a.tar", sampleTar())
        try checkSample(box, try extractArchive(atPath: path, into: box.dest))
    }

    @Test func tarGz() throws {
        let box = try Sandbox()
        let path = try box.write("a.tgz", try box.gzip(sampleTar()))
        try checkSample(box, try extractArchive(atPath: path, into: box.dest))
    }

    @Test func tarXz() throws {
        let box = try Sandbox()
        let path = try box.write("a.txz", try box.xz(sampleTar()))
        try checkSample(box, try extractArchive(atPath: path, into: box.dest))
    }

    @Test func concatenatedGzipMembers() throws {
        let box = try Sandbox()
        let tar = sampleTar()
        let gz = try box.gzip(Array(tar[..<1000])) + (try box.gzip(Array(tar[1000...])))
        let path = try box.write("a.tgz", gz)
        try checkSample(box, try extractArchive(atPath: path, into: box.dest))
    }

    @Test func largeFileStreamsThroughManyChunks() throws {
        let box = try Sandbox()
        var content = [UInt8](repeating: 0, count: 3_000_001)
        for i in content.indices { content[i] = UInt8(truncatingIfNeeded: i &* 2_654_435_761 >> 7) }
        var tar = RawTar()
        tar.add("big.bin", content: content)
        tar.file("after", "ok")
        tar.end()
        let path = try box.write("a.tgz", try box.gzip(tar.bytes))
        try extractArchive(atPath: path, into: box.dest)
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: box.dest + "/big.bin"))) == content)
        #expect(try box.read(box.dest + "/after") == "ok")
    }

    @Test func gnuLongNamesAndLinks() throws {
        let box = try Sandbox()
        let dir = String(repeating: "d", count: 120)
        let name = dir + "/" + String(repeating: "f", count: 130)
        var tar = RawTar()
        tar.add("././@LongLink", type: "L", content: Array(name.utf8) + [0])
        tar.add(String(name.prefix(100)), content: Array("long".utf8))
        tar.add("././@LongLink", type: "L", content: Array("short-link".utf8) + [0])
        tar.add("././@LongLink", type: "K", content: Array((name.dropFirst(dir.count + 1)).utf8) + [0])
        tar.add("ignored", type: "2", link: "ignored-too")
        tar.end()
        let path = try box.write("a.tar", tar.bytes)
        try extractArchive(atPath: path, into: box.dest)
        #expect(try box.read(box.dest + "/" + name) == "long")
        #expect(
            try FileManager.default.destinationOfSymbolicLink(atPath: box.dest + "/short-link")
                == String(repeating: "f", count: 130))
    }

    @Test func paxPathAndLinkpath() throws {
        let box = try Sandbox()
        let long = "pax/" + String(repeating: "p", count: 200)
        var tar = RawTar()
        tar.pax([("path", "global-should-be-ignored")], global: true)
        tar.pax([("path", long), ("mtime", "1700000000.5")])
        tar.file("truncated-name", "pax file")
        tar.pax([("linkpath", String(repeating: "p", count: 200))])
        tar.add("pax/link", type: "2", link: "wrong")
        tar.add("ustar-dir/name", content: Array("prefixed".utf8), prefix: "pre")
        tar.end()
        let path = try box.write("a.tar", tar.bytes)
        try extractArchive(atPath: path, into: box.dest)
        #expect(try box.read(box.dest + "/" + long) == "pax file")
        #expect(
            try FileManager.default.destinationOfSymbolicLink(atPath: box.dest + "/pax/link")
                == String(repeating: "p", count: 200))
        #expect(try box.read(box.dest + "/pre/ustar-dir/name") == "prefixed")
        #expect(!FileManager.default.fileExists(atPath: box.dest + "/global-should-be-ignored"))
    }

    @Test func githubArchiveHasOneTopDirectory() throws {
        let box = try Sandbox()
        var tar = RawTar()
        tar.pax([("comment", "0123456789abcdef")], global: true)
        tar.add("org-buildpack-1a2b3c/", type: "5", mode: 0o775)
        tar.file("org-buildpack-1a2b3c/bin/detect", "#!/bin/sh\n", mode: 0o755)
        tar.end()
        let path = try box.write("a.tgz", try box.gzip(tar.bytes))
        try extractArchive(atPath: path, into: box.dest)
        #expect(buildpackRoot(in: box.dest) == box.dest + "/org-buildpack-1a2b3c")
        #expect(try box.mode(box.dest + "/org-buildpack-1a2b3c/bin/detect") == 0o755)
        try FileManager.default.createDirectory(atPath: box.dest + "/bin", withIntermediateDirectories: false)
        #expect(buildpackRoot(in: box.dest) == box.dest)
        #expect(buildpackRoot(in: box.sentinel) == box.sentinel)
    }
}

@Suite struct HostileArchiveTests {
    @Test func dotDotMember() throws {
        let box = try Sandbox()
        var tar = RawTar()
        tar.file("bin/../../sentinel/pwned", "x")
        tar.end()
        let error = try box.refusal(tar.bytes)
        #expect(error?.kind == .unsafeMember)
        #expect(error?.description.contains("'bin/../../sentinel/pwned'") == true)
    }

    @Test func absolutePath() throws {
        let box = try Sandbox()
        var tar = RawTar()
        tar.file(box.sentinel + "/pwned", "x")
        tar.end()
        let error = try box.refusal(tar.bytes)
        #expect(error?.kind == .unsafeMember)
        #expect(error?.description.contains("'\(box.sentinel)/pwned'") == true)
        #expect(error?.description.contains("absolute") == true)
    }

    @Test func symlinkOutsideThenFileThroughIt() throws {
        let box = try Sandbox()
        var tar = RawTar()
        tar.add("escape", type: "2", link: "../sentinel")
        tar.file("escape/pwned", "x")
        tar.end()
        let error = try box.refusal(tar.bytes)
        #expect(error?.kind == .unsafeMember)
        #expect(error?.description.contains("'escape'") == true)
        #expect(!FileManager.default.fileExists(atPath: box.dest + "/escape"))
    }

    @Test func fileThroughAnInsideSymlink() throws {
        let box = try Sandbox()
        var tar = RawTar()
        tar.add("real/", type: "5")
        tar.add("alias", type: "2", link: "real")
        tar.file("alias/pwned", "x")
        tar.end()
        let error = try box.refusal(tar.bytes)
        #expect(error?.kind == .unsafeMember)
        #expect(error?.description.contains("'alias/pwned'") == true)
        #expect(!FileManager.default.fileExists(atPath: box.dest + "/real/pwned"))
    }

    @Test func symlinkMadeToEscapeByALaterSymlink() throws {
        let box = try Sandbox()
        var tar = RawTar()
        tar.add("up", type: "2", link: "here/..")  // inside while "here" is a plain name
        tar.add("here", type: "2", link: ".")  // now "up" is the destination's parent
        tar.end()
        let error = try box.refusal(tar.bytes)
        #expect(error?.description.contains("'up'") == true)
    }

    @Test func nulInPaxPath() throws {
        let box = try Sandbox()
        var tar = RawTar()
        tar.pax([("path", "bin\u{0}../../sentinel/pwned")])
        tar.file("placeholder", "x")
        tar.end()
        let error = try box.refusal(tar.bytes)
        #expect(error?.kind == .unsafeMember)
        #expect(error?.description.contains("NUL") == true)
    }

    @Test func hardLinkOutside() throws {
        let box = try Sandbox()
        _ = FileManager.default.createFile(atPath: box.base + "/secret", contents: Data("s".utf8))
        var tar = RawTar()
        tar.add("stolen", type: "1", link: "../secret")
        tar.end()
        let error = try box.refusal(tar.bytes)
        #expect(error?.kind == .unsafeMember)
        #expect(error?.description.contains("'stolen'") == true)
        var absolute = RawTar()
        absolute.add("stolen2", type: "1", link: box.base + "/secret")
        absolute.end()
        #expect(try box.refusal(absolute.bytes)?.description.contains("'stolen2'") == true)
    }

    @Test func hardLinkToSomethingNotExtractedBefore() throws {
        let box = try Sandbox()
        var tar = RawTar()
        tar.add("dir/", type: "5")
        tar.add("link-to-dir", type: "1", link: "dir")
        tar.end()
        let error = try box.refusal(tar.bytes)
        #expect(error?.description.contains("'link-to-dir'") == true)
    }

    @Test(arguments: [("3", "character device"), ("4", "block device"), ("6", "fifo")])
    func specialEntries(type: String, what: String) throws {
        let box = try Sandbox()
        var tar = RawTar()
        tar.add("dev/thing", type: Character(type))
        tar.end()
        let error = try box.refusal(tar.bytes)
        #expect(error?.kind == .unsupportedMember)
        #expect(error?.description.contains("'dev/thing'") == true)
        #expect(error?.description.contains(what) == true)
        #expect(!FileManager.default.fileExists(atPath: box.dest + "/dev/thing"))
    }

    @Test func sizeBomb() throws {
        let box = try Sandbox()
        var tar = RawTar()
        tar.file("small", String(repeating: "a", count: 600))
        tar.file("bomb", String(repeating: "b", count: 600))
        tar.end()
        let limits = ArchiveLimits(maxTotalBytes: 1000, maxEntries: 10)
        let error = try box.refusal(try box.gzip(tar.bytes), limits: limits)
        #expect(error?.kind == .limitExceeded)
        #expect(error?.description.contains("'bomb'") == true)
        #expect(!FileManager.default.fileExists(atPath: box.dest + "/bomb"))
    }

    @Test func tooManyEntries() throws {
        let box = try Sandbox()
        var tar = RawTar()
        for i in 1...5 { tar.file("f\(i)", "x") }
        tar.end()
        let error = try box.refusal(tar.bytes, limits: ArchiveLimits(maxTotalBytes: 1 << 20, maxEntries: 3))
        #expect(error?.kind == .limitExceeded)
        #expect(error?.description.contains("'f4'") == true)
    }

    @Test func truncatedGzip() throws {
        let box = try Sandbox()
        let gz = try box.gzip(sampleTar())
        let error = try box.refusal(Array(gz.dropLast(12)))
        #expect(error?.kind == .truncated)
        #expect(error?.description.contains("The archive is truncated") == true)
    }

    @Test func truncatedGzipInsideAMember() throws {
        let box = try Sandbox()
        var random = SystemRandomNumberGenerator()
        var tar = RawTar()
        tar.add("noise.bin", content: (0..<200_000).map { _ in UInt8.random(in: 0...255, using: &random) })
        tar.end()
        let gz = try box.gzip(tar.bytes)
        let error = try box.refusal(Array(gz.prefix(gz.count / 2)))
        #expect(error?.kind == .truncated)
        #expect(error?.member == "noise.bin")
        #expect(error?.description.contains("'noise.bin'") == true)
    }

    @Test func truncatedXz() throws {
        let box = try Sandbox()
        let xz = try box.xz(sampleTar())
        let error = try box.refusal(Array(xz.dropLast(20)))
        #expect(error?.kind == .truncated)
        #expect(error?.description.contains("The archive is truncated") == true)
    }

    @Test func truncatedPlainTar() throws {
        let box = try Sandbox()
        let error = try box.refusal(Array(sampleTar().prefix(1100)))
        #expect(error?.kind == .truncated)
        #expect(error?.description.contains("'bin/compile'") == true)
        let noEnd = try box.refusal(Array(sampleTar().dropLast(1024)))
        #expect(noEnd?.kind == .truncated)
    }

    @Test func corruptGzip() throws {
        let box = try Sandbox()
        var gz = try box.gzip(sampleTar())
        for i in 20..<40 { gz[i] ^= 0x5a }
        let error = try box.refusal(gz)
        #expect(error?.kind == .corrupt)
        #expect(error?.description.contains("corrupt gzip data") == true)
    }

    @Test func corruptTarHeader() throws {
        let box = try Sandbox()
        var tar = RawTar()
        tar.file("good", "ok")
        tar.add("bin/evil", content: Array("x".utf8), badChecksum: true)
        tar.end()
        let error = try box.refusal(tar.bytes)
        #expect(error?.kind == .corrupt)
        #expect(error?.description.contains("'bin/evil'") == true)
        #expect(error?.description.contains("checksum") == true)
    }

    @Test func notAnArchive() throws {
        let box = try Sandbox()
        let html = Array("<html>Not Found</html>\n".utf8) + [UInt8](repeating: 0x20, count: 600)
        let error = try box.refusal(html)
        #expect(error?.kind == .corrupt)
        #expect(error?.description.contains("not a tar archive") == true)
    }

    @Test func endlessExtendedHeaders() throws {
        let box = try Sandbox()
        var tar = RawTar()
        for _ in 0..<10 { tar.pax([("comment", String(repeating: "c", count: 400))], global: true) }
        tar.file("late", "x")
        tar.end()
        let error = try box.refusal(tar.bytes, limits: ArchiveLimits(maxTotalBytes: 1 << 20, maxEntries: 3))
        #expect(error?.kind == .limitExceeded)
        #expect(!FileManager.default.fileExists(atPath: box.dest + "/late"))
    }

    /// A GNU base-256 number in an 8-byte field is read, not trapped on.
    @Test func base256ModeField() throws {
        var tar = RawTar()
        tar.file("f", "x")
        tar.end()
        var bytes = tar.bytes
        bytes[100] = 0x80
        for i in 148..<156 { bytes[i] = 0x20 }
        let sum = String(bytes[0..<512].reduce(0) { $0 + Int($1) }, radix: 8)
        for (i, digit) in (String(repeating: "0", count: 6 - sum.count) + sum + "\0").utf8.enumerated() {
            bytes[148 + i] = digit
        }
        var reader = TarReader(MemorySource(bytes))
        #expect(try reader.next()?.path == "f")
    }

    @Test func symlinkResolution() {
        var tree = PathTree()
        let a = tree.set("a", in: PathTree.root, to: .directory)
        tree.set("up", in: a, to: .symlink(".."))
        tree.set("self", in: a, to: .symlink("."))
        tree.set("deep", in: PathTree.root, to: .symlink("a/b/c"))
        tree.set("loop", in: PathTree.root, to: .symlink("loop"))
        let top = PathTree.Position(node: PathTree.root)
        let inA = PathTree.Position(node: a)
        #expect(tree.resolve("x/../y", from: top) == .inside(PathTree.Position(node: PathTree.root, missing: 1)))
        #expect(tree.resolve("..", from: top) == .outside)
        #expect(tree.resolve("/etc", from: inA) == .outside)
        #expect(tree.resolve("up/..", from: inA) == .outside)
        #expect(tree.resolve("self/..", from: inA) == .inside(top))
        #expect(tree.resolve("deep/../../..", from: top) == .inside(top))
        #expect(tree.resolve("loop", from: top) == .loop)
    }
}
