import Foundation
import Testing

@testable import MultipackKit

/// `multipack stack pull|list|prune` against Debian's docker-registry on loopback, with images
/// made by umoci and pushed by skopeo (or, for the hostile ones, put through the registry's API).
@Suite struct StackPullTests {
    let temp: TempDir
    let registry: RegistryServer

    init() throws {
        temp = try TempDir("stack")
        registry = try RegistryServer(in: temp)
    }

    var stacks: String { temp.path + "/cache/multipack/stacks" }

    var environment: [String: String] {
        Multipack.environment([
            "HOME": temp.sub("home"), "XDG_CACHE_HOME": temp.path + "/cache", "TMPDIR": temp.sub("tmp"),
        ])
    }

    func stack(_ arguments: [String], _ extra: [String: String] = [:]) throws -> Output {
        try Shell.run(Repo.binary, ["stack"] + arguments, environment: environment.merging(extra) { $1 })
    }

    func entries(_ directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: stacks + "/" + directory)) ?? []).sorted()
    }

    /// The root a pull printed (`Root: …`).
    func rootPath(in output: Output) -> String? {
        output.stdout.split(separator: "\n").last { $0.contains("Root: ") }.map {
            String($0[$0.range(of: "Root: ")!.upperBound...])
        }
    }

    /// A busybox image of two layers, the second deleting a file (a whiteout) and adding a hard
    /// link and an absolute symlink.
    func smallImage(_ layout: OCILayout, tag: String = "1", id: String = "multipack-test") throws {
        try layout.create(tag) { rootfs in
            try OCILayout.busyboxRoot(rootfs, id: id)
            try "x".write(toFile: rootfs + "/etc/removed", atomically: true, encoding: .utf8)
            try FileManager.default.createDirectory(atPath: rootfs + "/data", withIntermediateDirectories: true)
            try "a".write(toFile: rootfs + "/data/a", atomically: true, encoding: .utf8)
        }
        try layout.addLayer(tag) { rootfs in
            try FileManager.default.removeItem(atPath: rootfs + "/etc/removed")
            try FileManager.default.linkItem(atPath: rootfs + "/data/a", toPath: rootfs + "/data/b")
            try FileManager.default.createSymbolicLink(
                atPath: rootfs + "/etc/alias", withDestinationPath: "/etc/os-release")
        }
    }

    @Test func pullsAnImageFromARealRegistryAndAWarmPullAsksOnce() throws {
        let layout = try OCILayout(in: temp)
        try smallImage(layout)
        try registry.push(layout, tag: "1", as: "test/small:1")
        let name = "\(registry.host)/test/small:1"

        let cold = try stack(["pull", name])

        #expect(cold.status == 0, "\(cold.all)")
        #expect(cold.stdout.contains("=====> Pulling the stack image \(name) (\(registry.host))"))
        let root = try #require(rootPath(in: cold))
        #expect(root.hasPrefix(stacks + "/roots/sha256/"))
        #expect(try String(contentsOfFile: root + "/etc/os-release", encoding: .utf8).contains("ID=multipack-test"))
        #expect(!FileManager.default.fileExists(atPath: root + "/etc/removed"))
        let a = try FileManager.default.attributesOfItem(atPath: root + "/data/a")[.systemFileNumber] as? Int
        let b = try FileManager.default.attributesOfItem(atPath: root + "/data/b")[.systemFileNumber] as? Int
        #expect(a != nil && a == b)
        // Inside the image, its absolute symlink leads to the image's file, not the host's.
        let inside = try Shell.run("unshare", ["-r", "/usr/sbin/chroot", root, "/bin/cat", "/etc/alias"])
        #expect(inside.stdout.contains("ID=multipack-test"), "\(inside.all)")
        let blobsAfterCold = registry.requests().filter { $0.contains("/blobs/") }
        #expect(blobsAfterCold.count == 3)  // config and two layers
        let before = registry.requests().count

        let warm = try stack(["pull", name])

        #expect(warm.status == 0, "\(warm.all)")
        #expect(warm.stdout.contains("is up to date in the cache"))
        let requests = registry.requests().dropFirst(before)
        #expect(
            Array(requests).map { $0.split(separator: " ").prefix(2).joined(separator: " ") } == [
                "HEAD /v2/test/small/manifests/1"
            ])

        let list = try stack(["list"])
        #expect(list.status == 0)
        #expect(list.stdout.contains(name))
        let digest = try layout.manifest("1").digest
        #expect(list.stdout.contains(String(digest.prefix(19))))
    }

    @Test func aPinnedDigestNeedsNoRegistryAndATagFallsBackToTheCacheOffline() throws {
        let layout = try OCILayout(in: temp)
        try smallImage(layout)
        try registry.push(layout, tag: "1", as: "test/small:1")
        let digest = try layout.manifest("1").digest
        let pinned = "\(registry.host)/test/small@\(digest)"
        #expect(try stack(["pull", pinned]).status == 0)
        #expect(try stack(["pull", "\(registry.host)/test/small:1"]).status == 0)
        registry.stop()

        let again = try stack(["pull", pinned])
        let offline = try stack(["pull", "\(registry.host)/test/small:1"])

        #expect(again.status == 0, "\(again.all)")
        #expect(again.stdout.contains("is up to date in the cache: \(digest)"))
        #expect(offline.status == 0, "\(offline.all)")
        #expect(offline.stderr.contains("cannot be reached; using the copy pulled before"))
    }

    @Test func theMirrorVariableServesDockerHubNames() throws {
        let layout = try OCILayout(in: temp)
        try smallImage(layout, tag: "build", id: "heroku-build")
        try smallImage(layout, tag: "run", id: "heroku-run")
        try registry.push(layout, tag: "build", as: "heroku/heroku:24-build")
        try registry.push(layout, tag: "run", as: "mirror/heroku/heroku:24")
        try registry.push(layout, tag: "run", as: "heroku/heroku:24")

        let plain = try stack(["pull"], ["MULTIPACK_STACK_REGISTRY": registry.host])
        let prefixed = try stack(
            ["pull", "heroku/heroku:24"], ["MULTIPACK_STACK_REGISTRY": "http://\(registry.host)/mirror/"])

        #expect(plain.status == 0, "\(plain.all)")
        #expect(plain.stdout.contains("Pulling the stack image heroku/heroku:24-build (\(registry.host))"))
        #expect(
            try String(contentsOfFile: #require(rootPath(in: plain)) + "/etc/os-release", encoding: .utf8).contains(
                "heroku-build"))
        #expect(prefixed.status == 0, "\(prefixed.all)")
        #expect(
            try String(contentsOfFile: #require(rootPath(in: prefixed)) + "/etc/os-release", encoding: .utf8).contains(
                "heroku-run"))
        let both = try stack(["pull", "--stack", "heroku-24"], ["MULTIPACK_STACK_REGISTRY": registry.host])
        #expect(both.status == 0, "\(both.all)")
        #expect(both.stdout.contains("heroku/heroku:24-build is up to date in the cache"))
        #expect(both.stdout.contains("heroku/heroku:24 is ready"))
        let list = try stack(["list"])
        #expect(list.stdout.contains("\(registry.host)/heroku/heroku:24-build"))
        #expect(list.stdout.contains("\(registry.host)/mirror/heroku/heroku:24"))
    }

    @Test func anIndexResolvesToLinuxAmd64AndSkipsAttestations() throws {
        let layout = try OCILayout(in: temp)
        try layout.create("arm", architecture: "arm64") { try OCILayout.busyboxRoot($0, id: "arm-root") }
        try layout.create("amd") { try OCILayout.busyboxRoot($0, id: "amd-root") }
        try layout.create("att") { try "{}".write(toFile: $0 + "/sbom.json", atomically: true, encoding: .utf8) }
        try layout.index(
            "multi",
            [("att", "unknown/unknown", true), ("arm", "linux/arm64", false), ("amd", "linux/amd64", false)])
        try layout.index("armonly", [("arm", "linux/arm64", false)])
        try registry.push(layout, tag: "multi", as: "test/multi:1", all: true)
        try registry.push(layout, tag: "armonly", as: "test/armonly:1", all: true)
        try registry.push(layout, tag: "arm", as: "test/arm:1")

        let multi = try stack(["pull", "\(registry.host)/test/multi:1"])
        #expect(multi.status == 0, "\(multi.all)")
        let root = try #require(rootPath(in: multi))
        #expect(try String(contentsOfFile: root + "/etc/os-release", encoding: .utf8).contains("amd-root"))
        #expect(root.contains(String(try layout.manifest("amd").digest.dropFirst(7))))
        let rootsBefore = entries("roots/sha256")
        let blobsBefore = entries("blobs/sha256")

        let armOnly = try stack(["pull", "\(registry.host)/test/armonly:1"])
        let arm = try stack(["pull", "\(registry.host)/test/arm:1"])

        #expect(armOnly.status == 1)
        #expect(armOnly.stderr.contains(" !     Could not pull the stack image \(registry.host)/test/armonly:1"))
        #expect(armOnly.stderr.contains("The index has no linux/amd64 image, only linux/arm64."))
        #expect(arm.status == 1)
        #expect(arm.stderr.contains("The image is for linux/arm64, and Heroku's dynos run linux/amd64."))
        #expect(entries("roots/sha256") == rootsBefore)
        #expect(entries("blobs/sha256") == blobsBefore)
    }

    /// What a refused image must leave: one ` !     ` block naming it (and the layer), exit 1,
    /// nothing new in the cache, the host untouched.
    func expectRefused(
        _ name: String, layer: String?, saying reason: String, victim: String? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let output = try stack(["pull", "\(registry.host)/\(name)"])
        #expect(output.status == 1, "\(output.all)", sourceLocation: sourceLocation)
        let block = output.stderr.split(separator: "\n").filter { $0.hasPrefix(" !     ") }
        #expect(
            block.first == " !     Could not pull the stack image \(registry.host)/\(name) (\(registry.host)).",
            "\(output.all)", sourceLocation: sourceLocation)
        if let layer {
            #expect(block.contains { $0.contains("Layer \(layer)") }, "\(output.all)", sourceLocation: sourceLocation)
        }
        #expect(output.stderr.contains(reason), "\(output.all)", sourceLocation: sourceLocation)
        #expect(!output.stderr.contains("Error("), sourceLocation: sourceLocation)
        #expect(entries("roots/sha256").isEmpty, sourceLocation: sourceLocation)
        #expect(entries("blobs/sha256").isEmpty, sourceLocation: sourceLocation)
        #expect(entries("images").isEmpty, sourceLocation: sourceLocation)
        if let victim {
            #expect(
                (try? FileManager.default.contentsOfDirectory(atPath: victim)) == ["keep"],
                sourceLocation: sourceLocation)
        }
    }

    @Test func aLayerWhoseBytesDoNotMatchItsDigestIsRefused() throws {
        var layer = RawTar()
        layer.file("etc/os-release", "ID=evil\n")
        let pushed = try registry.pushImage([layer], to: "test/evil", tag: "1")
        let data = registry.blobData(pushed.layers[0])
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: data)))
        bytes[bytes.count / 2] ^= 0xff
        try Data(bytes).write(to: URL(fileURLWithPath: data))

        try expectRefused("test/evil:1", layer: pushed.layers[0], saying: "its bytes do not match its digest")
    }

    @Test func layersThatClimbOutOrWriteThroughALinkAreRefused() throws {
        let victim = temp.sub("victim")
        try "keep".write(toFile: victim + "/keep", atomically: true, encoding: .utf8)

        var climbing = RawTar()
        climbing.file("etc/ok", "ok")
        // Deeper than PATH_MAX below the cache's directory, which must still be removed whole.
        let deep = (0..<16).map { _ in String(repeating: "d", count: 250) }.joined(separator: "/") + "/file"
        climbing.pax([("path", deep)])
        climbing.file("placeholder", "deep")
        climbing.file("../../escape", "x")
        let climb = try registry.pushImage([climbing], to: "test/climb", tag: "1")
        try expectRefused("test/climb:1", layer: climb.layers[0], saying: "contains '..'", victim: victim)

        var link = RawTar()
        link.add("etc", type: "2", link: victim)
        var through = RawTar()
        through.file("etc/passwd", "root::0:0::/:/bin/sh")
        let written = try registry.pushImage([link, through], to: "test/through", tag: "1")
        try expectRefused(
            "test/through:1", layer: written.layers[1], saying: "nothing is written through a symlink", victim: victim)

        var whiteout = RawTar()
        whiteout.file("etc/.wh.keep", "")
        let hidden = try registry.pushImage([link, whiteout], to: "test/whiteout", tag: "1")
        try expectRefused("test/whiteout:1", layer: hidden.layers[1], saying: "symlink", victim: victim)
    }

    @Test func aTenGigabyteLayerClaimIsRefusedBeforeAnyDownload() throws {
        var layer = RawTar()
        layer.file("etc/os-release", "ID=big\n")
        let pushed = try registry.pushImage([layer], to: "test/big", tag: "1", sizes: [10 << 30])

        try expectRefused("test/big:1", layer: pushed.layers[0], saying: "the manifest says it is 10737418240 bytes")
        #expect(!registry.requests().contains { $0.contains(pushed.layers[0]) })
    }

    @Test(arguments: ["name/UPPER", "a::b", "name@sha256:abc", "x/-y", "host:99999/name", "a//b", "name:-tag", ""])
    func aStringThatIsNoReferenceIsAUsageError(reference: String) throws {
        let output = try stack(["pull", reference])
        #expect(output.status == 2, "\(output.all)")
        #expect(output.stderr.contains("is not an image reference"), "\(output.all)")
    }

    @Test func pruneRemovesWhatNoNameNeedsAndLeavesTheRest() throws {
        let layout = try OCILayout(in: temp)
        try smallImage(layout, tag: "1", id: "first")
        try registry.push(layout, tag: "1", as: "test/moving:latest")
        #expect(try stack(["pull", "\(registry.host)/test/moving"]).status == 0)
        let first = try layout.manifest("1").digest
        try layout.addLayer("1") { try "v2".write(toFile: $0 + "/etc/version", atomically: true, encoding: .utf8) }
        try registry.push(layout, tag: "1", as: "test/moving:latest")
        #expect(try stack(["pull", "\(registry.host)/test/moving"]).status == 0)
        let second = try layout.manifest("1").digest
        #expect(entries("roots/sha256").count == 2)

        let prune = try stack(["prune"])

        #expect(prune.status == 0, "\(prune.all)")
        #expect(prune.stdout.contains("1 root and"))
        #expect(entries("roots/sha256") == [String(second.dropFirst(7))])
        #expect(!entries("blobs/sha256").contains(String(first.dropFirst(7))))
        #expect(entries("blobs/sha256").count == 5)  // manifest, config, three layers

        let layers = try stack(["prune", "--layers"])
        #expect(layers.status == 0)
        #expect(entries("blobs/sha256").count == 2)
        #expect(try stack(["pull", "\(registry.host)/test/moving"]).stdout.contains("up to date"))

        let all = try stack(["prune", "--all"])
        #expect(all.status == 0)
        #expect(entries("roots/sha256").isEmpty && entries("blobs/sha256").isEmpty && entries("images").isEmpty)
        #expect(try stack(["list"]).stdout.contains("No stack image"))
    }
}
