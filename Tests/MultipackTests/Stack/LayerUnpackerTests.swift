import Foundation
import Testing

@testable import MultipackKit

/// Layers made by hand (members no honest tool writes included), applied in order to a root in
/// a sandbox whose `sentinel` sibling hostile layers aim at.
@Suite struct LayerUnpackerTests {
    let box: Sandbox
    var root: String { box.dest }

    init() throws { box = try Sandbox() }

    /// Applies each layer in order (plain tar; `compress` gzips or zstds it first).
    @discardableResult
    func apply(_ layers: [RawTar], compress: String? = "gzip", limits: LayerLimits = .default) throws -> LayerUnpacker {
        var unpacker = LayerUnpacker(root: try ArchiveDirectory.open(root), limits: limits)
        for (index, layer) in layers.enumerated() {
            var tar = layer
            tar.end()
            var path = try box.write("layer\(index).tar", tar.bytes)
            if let compress {
                try Shell.run(compress, ["-q", "-f", path])
                path += compress == "gzip" ? ".gz" : compress == "zstd" ? ".zst" : ".xz"
            }
            try unpacker.apply(layerAt: path)
        }
        return unpacker
    }

    func kind(_ relative: String) -> String {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: root + "/" + relative) else {
            return "missing"
        }
        switch attributes[.type] as? FileAttributeType {
        case .typeDirectory?: return "directory"
        case .typeSymbolicLink?: return "symlink"
        case .typeRegular?: return "file"
        default: return "other"
        }
    }

    func read(_ relative: String) -> String? { try? String(contentsOfFile: root + "/" + relative, encoding: .utf8) }

    func mode(_ relative: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: root + "/" + relative)[.posixPermissions]) as? Int) ?? -1
    }

    var sentinelIsEmpty: Bool { (try? FileManager.default.contentsOfDirectory(atPath: box.sentinel))?.isEmpty == true }

    @Test func unpacksARootWithItsLinksModesAndTimes() throws {
        var layer = RawTar()
        layer.add("./", type: "5", mode: 0o755)
        layer.add("./usr/", type: "5", mode: 0o755)
        layer.add("./usr/bin/", type: "5", mode: 0o755)
        layer.file("./usr/bin/tool", "#!/bin/sh\n", mode: 0o4755)
        layer.add("/usr/bin/alias", type: "1", link: "usr/bin/tool")
        layer.add("./bin", type: "2", link: "usr/bin")
        layer.add("./usr/bin/absolute", type: "2", link: "/usr/bin/tool")
        layer.add("./usr/bin/outside", type: "2", link: "../../../../../etc/passwd")
        layer.add("./tmp/", type: "5", mode: 0o1777)
        layer.add("./etc/", type: "5", mode: 0o555)
        layer.file("./etc/os-release", "ID=ubuntu\n", mode: 0o2644)
        layer.add("./dev/null", type: "3")
        layer.add("./dev/fifo", type: "6")

        let unpacker = try apply([layer])

        #expect(read("usr/bin/tool") == "#!/bin/sh\n")
        #expect(mode("usr/bin/tool") == 0o755)  // setuid dropped
        #expect(mode("etc/os-release") == 0o644)  // setgid dropped
        #expect(mode("tmp") == 0o1777)
        #expect(mode("etc") == 0o755)  // the owner keeps write access, so the cache can remove it
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: root + "/bin") == "usr/bin")
        #expect(
            try FileManager.default.destinationOfSymbolicLink(atPath: root + "/usr/bin/absolute") == "/usr/bin/tool")
        #expect(kind("usr/bin/outside") == "symlink")
        let tool = try FileManager.default.attributesOfItem(atPath: root + "/usr/bin/tool")
        let alias = try FileManager.default.attributesOfItem(atPath: root + "/usr/bin/alias")
        #expect(tool[.systemFileNumber] as? Int == alias[.systemFileNumber] as? Int)
        #expect((tool[.modificationDate] as? Date)?.timeIntervalSince1970 == 1_700_000_000)
        #expect(kind("dev/null") == "missing" && kind("dev/fifo") == "missing")
        #expect(unpacker.skipped == 2)
    }

    @Test func aLaterLayerReplacesWhatIsThereWhateverItsType() throws {
        var lower = RawTar()
        lower.file("a", "file")
        lower.add("b/", type: "5")
        lower.file("b/inside", "x")
        lower.add("c", type: "2", link: "/somewhere")
        lower.file("d", "old")
        var upper = RawTar()
        upper.add("a/", type: "5")
        upper.file("a/new", "new")
        upper.add("b", type: "2", link: "a")
        upper.file("c", "now a file")
        upper.file("d", "new")

        try apply([lower, upper])

        #expect(kind("a") == "directory" && read("a/new") == "new")
        #expect(kind("b") == "symlink")
        #expect(read("c") == "now a file")
        #expect(read("d") == "new")
    }

    @Test func whiteoutsHideLowerLayersWhateverTheirOrder() throws {
        var lower = RawTar()
        lower.add("etc/", type: "5")
        lower.file("etc/passwd", "root")
        lower.file("etc/hosts", "old hosts")
        lower.file("etc/shadow", "secret")
        lower.add("opt/", type: "5")
        lower.add("opt/tool/", type: "5")
        lower.file("opt/tool/old", "old")
        lower.add("var/", type: "5")
        lower.file("var/a", "a")
        lower.add("var/sub/", type: "5")
        lower.file("var/sub/b", "b")
        var upper = RawTar()
        upper.file("etc/.wh.passwd", "")
        upper.file("etc/hosts", "new hosts")  // after an opaque marker that comes later
        upper.file("opt/tool/.wh..wh..opq", "")
        upper.file("opt/tool/fresh", "fresh")
        upper.file("var/sub/c", "c")  // before the opaque marker of its parent
        upper.file("var/.wh..wh..opq", "")
        upper.file(".wh.nothing-here", "")
        upper.add("etc/.wh..wh..opq", type: "0")
        upper.file("etc/.wh..wh..plnk", "")  // aufs' bookkeeping: ignored

        try apply([lower, upper])

        #expect(kind("etc/passwd") == "missing")
        #expect(kind("etc/shadow") == "missing")
        #expect(read("etc/hosts") == "new hosts")
        #expect(kind("opt/tool/old") == "missing" && read("opt/tool/fresh") == "fresh")
        #expect(kind("var/a") == "missing" && kind("var/sub/b") == "missing" && read("var/sub/c") == "c")
        let written = FileManager.default.enumerator(atPath: root)?.allObjects as? [String] ?? []
        #expect(!written.contains { $0.split(separator: "/").last?.hasPrefix(".wh.") == true })
    }

    @Test func aWhiteoutOfADirectoryRemovesItAndAPathBeneathItMayFollow() throws {
        var lower = RawTar()
        lower.add("usr/share/doc/", type: "5")
        lower.file("usr/share/doc/README", "x")
        var upper = RawTar()
        upper.file("usr/share/.wh.doc", "")
        var top = RawTar()
        top.file("usr/share/doc/NEW", "y")

        try apply([lower, upper])
        #expect(kind("usr/share/doc") == "missing")
        try apply([top])
        #expect(read("usr/share/doc/NEW") == "y" && kind("usr/share/doc/README") == "missing")
    }

    @Test(arguments: [
        ("../escape", "contains '..'"),
        ("a/../../escape", "contains '..'"),
        ("../.wh.sentinel", "contains '..'"),
    ])
    func aPathThatClimbsOutIsRefused(path: String, reason: String) throws {
        var layer = RawTar()
        layer.file(path, "x")
        let error = #expect(throws: ArchiveError.self) { try apply([layer]) }
        #expect(error?.kind == .unsafeMember)
        #expect(error?.message.contains(reason) == true)
        #expect(sentinelIsEmpty)
        #expect(FileManager.default.fileExists(atPath: box.sentinel))
    }

    @Test func nothingIsWrittenThroughASymlinkOfTheSameOrALowerLayer() throws {
        var same = RawTar()
        same.add("evil", type: "2", link: box.sentinel)
        same.file("evil/owned", "x")
        #expect(throws: ArchiveError.self) { try apply([same]) }

        var lower = RawTar()
        lower.add("evil2", type: "2", link: box.sentinel)
        lower.add("up", type: "2", link: "../sentinel")
        var upper = RawTar()
        upper.file("evil2/owned", "x")
        let error = #expect(throws: ArchiveError.self) { try apply([lower, upper]) }
        #expect(error?.message.contains("nothing is written through a symlink") == true)

        var whiteout = RawTar()
        whiteout.file("up/.wh.keep", "")
        #expect(throws: ArchiveError.self) { try apply([whiteout]) }
        #expect(sentinelIsEmpty)
    }

    @Test func aWhiteoutThroughASymlinkRemovesNothingOutside() throws {
        try "keep".write(toFile: box.sentinel + "/keep", atomically: true, encoding: .utf8)
        var lower = RawTar()
        lower.add("link", type: "2", link: box.sentinel)
        var upper = RawTar()
        upper.file("link/.wh.keep", "")
        upper.file("link/.wh..wh..opq", "")

        let error = #expect(throws: ArchiveError.self) { try apply([lower, upper]) }

        #expect(error?.message.contains("symlink") == true)
        #expect(FileManager.default.fileExists(atPath: box.sentinel + "/keep"))
    }

    @Test func hardLinksStayInsideTheRootAndNameFiles() throws {
        try "secret".write(toFile: box.sentinel + "/target", atomically: true, encoding: .utf8)
        var climbing = RawTar()
        climbing.add("stolen", type: "1", link: "../sentinel/target")
        #expect(throws: ArchiveError.self) { try apply([climbing]) }

        var throughLink = RawTar()
        throughLink.add("out", type: "2", link: box.sentinel)
        throughLink.add("stolen", type: "1", link: "out/target")
        let error = #expect(throws: ArchiveError.self) { try apply([throughLink]) }
        #expect(error?.message.contains("not a file in the image") == true)

        var directory = RawTar()
        directory.add("dir/", type: "5")
        directory.add("link", type: "1", link: "dir")
        #expect(throws: ArchiveError.self) { try apply([directory]) }
        #expect(kind("stolen") == "missing")
        #expect(try String(contentsOfFile: box.sentinel + "/target", encoding: .utf8) == "secret")
    }

    @Test func aHardLinkMayNameAFileOfALowerLayer() throws {
        var lower = RawTar()
        lower.file("usr/bin/perl5.38", "perl")
        var upper = RawTar()
        upper.add("usr/bin/perl", type: "1", link: "/usr/bin/perl5.38")

        try apply([lower, upper])

        #expect(read("usr/bin/perl") == "perl")
    }

    @Test func twoTypesAtOnePathInOneLayerAreRefused() throws {
        var layer = RawTar()
        layer.file("x", "file")
        layer.add("x/", type: "5")
        let error = #expect(throws: ArchiveError.self) { try apply([layer]) }
        #expect(error?.message.contains("same layer") == true)
    }

    @Test func limitsAreEnforcedAcrossLayers() throws {
        var one = RawTar()
        one.file("a", String(repeating: "x", count: 600))
        var two = RawTar()
        two.file("b", String(repeating: "y", count: 600))
        let bytes = #expect(throws: ArchiveError.self) {
            try apply([one, two], limits: LayerLimits(maxBytes: 1000, maxEntries: 100))
        }
        #expect(bytes?.kind == .limitExceeded)

        var many = RawTar()
        for index in 0..<5 { many.file("f\(index)", "") }
        let entries = #expect(throws: ArchiveError.self) {
            try apply([many], limits: LayerLimits(maxBytes: 1000, maxEntries: 3))
        }
        #expect(entries?.kind == .limitExceeded)
    }

    @Test func theLimitOfAnImageFollowsItsCompressedSize() {
        #expect(LayerLimits.default.fitting(compressedBytes: 100 << 20).maxBytes == (3200 << 20) + (1 << 30))
        #expect(LayerLimits.default.fitting(compressedBytes: 4 << 30).maxBytes == 32 << 30)
        #expect(LayerLimits.default.fitting(compressedBytes: .max).maxBytes == 32 << 30)
    }

    @Test func anUnknownMemberTypeIsRefusedAndDevicesAreNot() throws {
        var layer = RawTar()
        layer.add("sparse", type: "S")
        let error = #expect(throws: ArchiveError.self) { try apply([layer]) }
        #expect(error?.kind == .unsupportedMember)
    }

    @Test(arguments: ["zstd", "xz", nil] as [String?])
    func otherCompressionsAreRead(compress: String?) throws {
        var layer = RawTar()
        layer.file("etc/os-release", "ID=ubuntu\n")
        try apply([layer], compress: compress)
        #expect(read("etc/os-release") == "ID=ubuntu\n")
    }

    @Test func aTruncatedZstdLayerIsAnError() throws {
        var layer = RawTar()
        layer.file("big", String(repeating: "0123456789", count: 10_000))
        layer.end()
        let path = try box.write("layer.tar", layer.bytes)
        try Shell.run("zstd", ["-q", "-f", path])
        let compressed = try Data(contentsOf: URL(fileURLWithPath: path + ".zst"))
        let cut = try box.write("cut.zst", Array(compressed.prefix(compressed.count / 2)))
        var unpacker = LayerUnpacker(root: try ArchiveDirectory.open(root))
        let error = #expect(throws: ArchiveError.self) { try unpacker.apply(layerAt: cut) }
        #expect(error?.kind == .truncated)
    }
}
