import Foundation
import Testing

@testable import MultipackKit

/// Builds tar bytes by hand, including members no honest tool writes.
struct RawTar {
    private(set) var bytes: [UInt8] = []

    mutating func add(
        _ name: String, type: Character = "0", content: [UInt8] = [], link: String = "", mode: Int = 0o644,
        badChecksum: Bool = false, prefix: String = ""
    ) {
        var header = [UInt8](repeating: 0, count: 512)
        func put(_ offset: Int, _ text: String) {
            for (i, byte) in text.utf8.enumerated() { header[offset + i] = byte }
        }
        func octal(_ offset: Int, _ width: Int, _ value: Int) {
            let digits = String(value, radix: 8)
            put(offset, String(repeating: "0", count: width - 1 - digits.count) + digits)
        }
        put(0, String(name.prefix(100)))
        octal(100, 8, mode)
        octal(108, 8, 1000)
        octal(116, 8, 1000)
        octal(124, 12, content.count)
        octal(136, 12, 1_700_000_000)
        header[156] = type.asciiValue!
        put(157, link)
        put(257, "ustar\0")
        put(263, "00")
        put(345, prefix)
        put(148, "        ")
        var sum = header.reduce(0) { $0 + Int($1) }
        if badChecksum { sum += 1 }
        octal(148, 7, sum)
        bytes += header
        bytes += content
        bytes += [UInt8](repeating: 0, count: (512 - content.count % 512) % 512)
    }

    mutating func file(_ name: String, _ text: String, mode: Int = 0o644) {
        add(name, content: Array(text.utf8), mode: mode)
    }

    /// A pax extended header ('x', or 'g' for global) carrying `records`.
    mutating func pax(_ records: [(String, String)], global: Bool = false) {
        var data: [UInt8] = []
        for (key, value) in records {
            let body = " \(key)=\(value)\n"
            var length = body.utf8.count + 1
            while "\(length)".count + body.utf8.count != length { length += 1 }
            data += Array("\(length)\(body)".utf8)
        }
        add("PaxHeaders/x", type: global ? "g" : "x", content: data)
    }

    mutating func end() { bytes += [UInt8](repeating: 0, count: 1024) }
}

/// A temporary directory holding `dest` (where archives go) and `sentinel` next to it, which
/// hostile archives aim at and which must stay empty.
final class Sandbox {
    let base: String
    var dest: String { base + "/dest" }
    var sentinel: String { base + "/sentinel" }

    init() throws {
        base = NSTemporaryDirectory() + "multipack-archive-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: base + "/dest", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: base + "/sentinel", withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: base) }

    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = base + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func read(_ path: String) throws -> String {
        try String(contentsOfFile: path, encoding: .utf8)
    }

    var sentinelIsEmpty: Bool {
        ((try? FileManager.default.contentsOfDirectory(atPath: sentinel)) ?? ["?"]).isEmpty
    }

    func mode(_ path: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return (attributes[.posixPermissions] as! NSNumber).intValue
    }

    /// Runs a command and returns its standard output; fails the test on a non-zero exit.
    @discardableResult
    func run(_ arguments: [String], input: [UInt8]? = nil) throws -> [UInt8] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let stdout = Pipe()
        process.standardOutput = stdout
        let stdin = Pipe()
        if input != nil { process.standardInput = stdin }
        try process.run()
        if let input {
            // Write from another thread so a full stdout pipe cannot deadlock us.
            let handle = stdin.fileHandleForWriting
            Thread.detachNewThread {
                handle.write(Data(input))
                try? handle.close()
            }
        }
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(arguments) failed")
        return Array(output)
    }

    func gzip(_ bytes: [UInt8]) throws -> [UInt8] { try run(["gzip", "-c", "-n"], input: bytes) }
    func xz(_ bytes: [UInt8]) throws -> [UInt8] { try run(["xz", "-c"], input: bytes) }

    /// Extracts and returns the error, failing the test if there was none.
    func refusal(_ archive: [UInt8], limits: ArchiveLimits = .default) throws -> ArchiveError? {
        let path = try write("hostile.tar", archive)
        do {
            try extractArchive(atPath: path, into: dest, limits: limits)
            Issue.record("the archive was accepted")
            return nil
        } catch let error as ArchiveError {
            #expect(sentinelIsEmpty, "something was written outside the destination")
            return error
        }
    }
}
