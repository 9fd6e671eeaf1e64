import Foundation
import Testing

@testable import MultipackKit

@Suite struct TarGzWriterTests {
    /// A tree with an exec file, a symlink, nested directories and a name longer than 100 bytes.
    private func makeTree(_ box: Sandbox) throws -> String {
        let root = box.base + "/tree"
        let fm = FileManager.default
        let long = root + "/deep/" + String(repeating: "n", count: 120)
        try fm.createDirectory(atPath: long, withIntermediateDirectories: true)
        _ = fm.createFile(atPath: root + "/Procfile", contents: Data("web: ./run\n".utf8))
        _ = fm.createFile(
            atPath: root + "/run", contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o755])
        _ = fm.createFile(atPath: long + "/file.txt", contents: Data(repeating: 7, count: 300_000))
        try fm.createSymbolicLink(atPath: root + "/start", withDestinationPath: "run")
        try fm.createSymbolicLink(
            atPath: root + "/far", withDestinationPath: "deep/" + String(repeating: "n", count: 120) + "/file.txt")
        return root
    }

    @Test func roundTripThroughOurReaderAndGnuTar() throws {
        let box = try Sandbox()
        let tree = try makeTree(box)
        let archive = box.base + "/slug.tgz"
        var writer = try TarGzWriter(path: archive, options: .reproducible)
        try writer.addTree(tree, prefix: "./app/")
        try writer.finish()

        let listing = String(decoding: try box.run(["tar", "tzf", archive]), as: UTF8.self)
        let names = listing.split(separator: "\n").map(String.init)
        #expect(names.first == "./app/")
        #expect(names.contains("./app/Procfile"))
        #expect(names.contains("./app/deep/" + String(repeating: "n", count: 120) + "/file.txt"))
        #expect(names.allSatisfy { $0.hasPrefix("./app/") })

        let summary = try extractArchive(atPath: archive, into: box.dest)
        #expect(summary.bytes == 300_000 + 21)
        let app = box.dest + "/app"
        #expect(try box.read(app + "/Procfile") == "web: ./run\n")
        #expect(try box.mode(app + "/run") == 0o755)
        #expect(try box.mode(app + "/Procfile") == 0o644)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: app + "/start") == "run")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: app + "/far").hasSuffix("/file.txt"))
        let data = try Data(
            contentsOf: URL(fileURLWithPath: app + "/deep/" + String(repeating: "n", count: 120) + "/file.txt"))
        #expect(data == Data(repeating: 7, count: 300_000))

        try FileManager.default.createDirectory(atPath: box.base + "/gnu", withIntermediateDirectories: false)
        try box.run(["tar", "xzf", archive, "-C", box.base + "/gnu"])
        #expect(try box.read(box.base + "/gnu/app/Procfile") == "web: ./run\n")
    }

    @Test func reproducible() throws {
        let box = try Sandbox()
        let tree = try makeTree(box)
        func write(_ name: String) throws -> Data {
            var writer = try TarGzWriter(path: box.base + "/" + name, options: .reproducible)
            try writer.addTree(tree, prefix: "./app/")
            try writer.finish()
            return try Data(contentsOf: URL(fileURLWithPath: box.base + "/" + name))
        }
        let first = try write("one.tgz")
        try FileManager.default.setAttributes(
            [.modificationDate: Date(timeIntervalSince1970: 5)], ofItemAtPath: tree + "/run")
        let second = try write("two.tgz")
        #expect(first == second)
    }

    @Test func lowLevelMembers() throws {
        let box = try Sandbox()
        let archive = box.base + "/a.tgz"
        var writer = try TarGzWriter(path: archive, options: TarGzWriter.Options(compressionLevel: 1))
        try writer.addDirectory("bin")
        try writer.addFile("bin/detect", contents: Array("#!/bin/sh\n".utf8), mode: 0o755)
        try writer.addSymlink("bin/alias", target: "detect")
        try writer.finish()
        try extractArchive(atPath: archive, into: box.dest)
        #expect(try box.mode(box.dest + "/bin/detect") == 0o755)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: box.dest + "/bin/alias") == "detect")
    }
}
