import Foundation
import Testing

@testable import MultipackKit

#if canImport(Glibc)
    import Glibc
#endif

/// Debian's `docker-registry` (the CNCF distribution registry) serving on a free loopback port,
/// its storage and its log in the test's temp dir. Stopped by `stop()` or when released.
final class RegistryServer {
    let port: Int
    let storage: String
    let logPath: String
    private let process: Process

    var host: String { "127.0.0.1:\(port)" }

    init(in temp: TempDir) throws {
        let directory = temp.sub("registry")
        storage = directory + "/storage"
        logPath = directory + "/registry.log"
        port = try Self.freePort()
        let config = """
            version: 0.1
            log:
              level: error
            storage:
              filesystem:
                rootdirectory: \(storage)
              delete:
                enabled: true
            http:
              addr: 127.0.0.1:\(port)
            """
        try config.write(toFile: directory + "/config.yml", atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/docker-registry")
        process.arguments = ["serve", directory + "/config.yml"]
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Ready once it answers /v2/.
        for _ in 0..<200 {
            if (try? Shell.run("curl", ["-sf", "-o", "/dev/null", "http://\(host)/v2/"]))?.status == 0 { return }
            usleep(50_000)
        }
        stop()
        throw TestFailure(
            "docker-registry did not start: \((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "")")
    }

    deinit { stop() }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }

    /// multipack's requests in the access log (`GET /v2/…`; not the pushes), after a moment for
    /// the last lines to come.
    func requests() -> [String] {
        usleep(300_000)
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            guard line.hasSuffix("\"multipack\""), let start = line.firstIndex(of: "\""), line.contains(" /v2/")
            else { return nil }
            let rest = line[line.index(after: start)...]
            return String(rest.prefix { $0 != "\"" })
        }
    }

    /// Copies an image of an OCI layout to `NAME:TAG` on this registry with skopeo (`all`: an
    /// index with every image it names).
    func push(_ layout: OCILayout, tag: String, as name: String, all: Bool = false) throws {
        let result = try Shell.run(
            "skopeo",
            ["copy", "--quiet", "--dest-tls-verify=false"] + (all ? ["--all"] : [])
                + ["oci:\(layout.path):\(tag)", "docker://\(host)/\(name)"])
        if result.status != 0 { throw TestFailure("skopeo copy failed: \(result.all)") }
    }

    /// Uploads a blob through the registry's API; returns its digest.
    @discardableResult
    func upload(_ bytes: [UInt8], to repository: String) throws -> String {
        let digest = "sha256:" + sha256(bytes)
        let file = NSTemporaryDirectory() + "multipack-test-blob-" + UUID().uuidString
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        defer { try? FileManager.default.removeItem(atPath: file) }
        let start = try Shell.run(
            "curl",
            ["-sf", "-D", "-", "-o", "/dev/null", "-X", "POST", "http://\(host)/v2/\(repository)/blobs/uploads/"])
        guard
            let location = start.stdout.split(separator: "\r\n").first(where: { $0.lowercased().hasPrefix("location:") }
            )?
            .dropFirst("location:".count).trimmingCharacters(in: .whitespaces)
        else { throw TestFailure("no upload location: \(start.all)") }
        let put = try Shell.run(
            "curl",
            [
                "-sf", "-X", "PUT", "-H", "Content-Type: application/octet-stream", "--data-binary", "@" + file,
                location + (location.contains("?") ? "&" : "?") + "digest=" + digest,
            ])
        if put.status != 0 { throw TestFailure("blob upload failed: \(put.all)") }
        return digest
    }

    /// Puts a manifest (or index) as `REPOSITORY:REFERENCE`; returns its digest.
    @discardableResult
    func putManifest(_ json: String, to repository: String, reference: String, mediaType: String) throws -> String {
        let file = NSTemporaryDirectory() + "multipack-test-manifest-" + UUID().uuidString
        try json.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let put = try Shell.run(
            "curl",
            [
                "-s", "-w", "%{http_code}", "-o", "/dev/null", "-X", "PUT", "-H", "Content-Type: \(mediaType)",
                "--data-binary", "@" + file, "http://\(host)/v2/\(repository)/manifests/\(reference)",
            ])
        if !put.stdout.hasPrefix("201") { throw TestFailure("manifest upload failed: \(put.all)") }
        return "sha256:" + sha256(Array(json.utf8))
    }

    /// An image of hand-made layers (plain tar, gzipped here) pushed through the API, with a
    /// config for `architecture`; returns the manifest's digest.
    @discardableResult
    func pushImage(
        _ layers: [RawTar], to repository: String, tag: String, architecture: String = "amd64",
        sizes: [Int64]? = nil
    ) throws -> (manifest: String, layers: [String]) {
        var descriptors: [String] = []
        var digests: [String] = []
        for (index, layer) in layers.enumerated() {
            var tar = layer
            tar.end()
            let gzipped = try gzip(tar.bytes)
            let digest = try upload(gzipped, to: repository)
            digests.append(digest)
            descriptors.append(
                #"{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"\#(digest)","size":\#(sizes?[index] ?? Int64(gzipped.count))}"#
            )
        }
        let config = Array(
            #"{"architecture":"\#(architecture)","os":"linux","config":{"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":[]}}"#
                .utf8)
        let configDigest = try upload(config, to: repository)
        let manifest =
            #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\#(configDigest)","size":\#(config.count)},"layers":[\#(descriptors.joined(separator: ","))]}"#
        let digest = try putManifest(
            manifest, to: repository, reference: tag, mediaType: "application/vnd.oci.image.manifest.v1+json")
        return (digest, digests)
    }

    /// Where the registry keeps a blob's bytes (to damage them behind its back).
    func blobData(_ digest: String) -> String {
        let hex = digest.dropFirst("sha256:".count)
        return "\(storage)/docker/registry/v2/blobs/sha256/\(hex.prefix(2))/\(hex)/data"
    }

    private func gzip(_ bytes: [UInt8]) throws -> [UInt8] {
        let file = NSTemporaryDirectory() + "multipack-test-layer-" + UUID().uuidString
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        defer { try? FileManager.default.removeItem(atPath: file + ".gz") }
        try Shell.run("gzip", ["-n", "-q", file])
        return Array(try Data(contentsOf: URL(fileURLWithPath: file + ".gz")))
    }

    /// A port the kernel has just handed out and taken back.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr = in_addr(s_addr: UInt32(0x7f00_0001).bigEndian)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else { throw TestFailure("no free port") }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// An OCI image layout made with umoci: images built layer by layer from a root directory,
/// rootless.
struct OCILayout {
    let path: String
    private let scratch: String

    init(in temp: TempDir, name: String = "layout") throws {
        path = temp.path + "/" + name
        scratch = temp.sub(name + "-bundles")
        try Self.umoci(["init", "--layout", path])
    }

    /// A new image `tag` whose first layer is what `build` puts in the (empty) root.
    func create(_ tag: String, architecture: String = "amd64", _ build: (String) throws -> Void) throws {
        try Self.umoci(["new", "--image", "\(path):\(tag)"])
        try addLayer(tag, build)
        if architecture != "amd64" {
            try Self.umoci(["config", "--image", "\(path):\(tag)", "--architecture", architecture])
        }
    }

    /// One more layer: what `change` does to the image's root (deletions become whiteouts).
    func addLayer(_ tag: String, _ change: (String) throws -> Void) throws {
        let bundle = scratch + "/" + UUID().uuidString
        try Self.umoci(["unpack", "--rootless", "--image", "\(path):\(tag)", bundle])
        try change(bundle + "/rootfs")
        try Self.umoci(["repack", "--image", "\(path):\(tag)", bundle])
        try? FileManager.default.removeItem(atPath: bundle)
    }

    /// The manifest descriptor of `tag` in index.json.
    func manifest(_ tag: String) throws -> (digest: String, size: Int) {
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path + "/index.json")))
        let manifests = (index as? [String: Any])?["manifests"] as? [[String: Any]] ?? []
        guard
            let entry = manifests.last(where: {
                ($0["annotations"] as? [String: String])?["org.opencontainers.image.ref.name"] == tag
            }), let digest = entry["digest"] as? String, let size = entry["size"] as? Int
        else { throw TestFailure("no image \(tag) in \(path)") }
        return (digest, size)
    }

    func blob(_ digest: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: path + "/blobs/sha256/" + digest.dropFirst(7))))
    }

    /// The layer digests of `tag`, bottom first.
    func layers(_ tag: String) throws -> [String] {
        let manifest = try JSONSerialization.jsonObject(with: Data(try blob(manifest(tag).digest)))
        return ((manifest as? [String: Any])?["layers"] as? [[String: Any]] ?? []).compactMap {
            $0["digest"] as? String
        }
    }

    /// Adds an index named `tag` to index.json, naming the images `entries` with their platforms
    /// (an `attestation` one as Docker writes them), for `skopeo copy --all`.
    func index(_ tag: String, _ entries: [(tag: String, platform: String, attestation: Bool)]) throws {
        var manifests: [String] = []
        for entry in entries {
            let (digest, size) = try manifest(entry.tag)
            let parts = entry.platform.split(separator: "/")
            let annotations =
                entry.attestation
                ? #","annotations":{"vnd.docker.reference.type":"attestation-manifest","vnd.docker.reference.digest":"\#(digest)"}"#
                : ""
            manifests.append(
                #"{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\#(digest)","size":\#(size),"platform":{"architecture":"\#(parts[1])","os":"\#(parts[0])"}\#(annotations)}"#
            )
        }
        let index = Array(
            #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[\#(manifests.joined(separator: ","))]}"#
                .utf8)
        let digest = "sha256:" + sha256(index)
        try Data(index).write(to: URL(fileURLWithPath: path + "/blobs/sha256/" + digest.dropFirst(7)))
        let indexPath = path + "/index.json"
        var top =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: indexPath))) as! [String: Any]
        var list = top["manifests"] as? [[String: Any]] ?? []
        list.append([
            "mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": index.count,
            "annotations": ["org.opencontainers.image.ref.name": tag],
        ])
        top["manifests"] = list
        try JSONSerialization.data(withJSONObject: top).write(to: URL(fileURLWithPath: indexPath))
    }

    /// A small root: busybox (static) as /bin/busybox with /bin/sh, and an os-release saying `id`.
    static func busyboxRoot(_ rootfs: String, id: String) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: rootfs + "/bin", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: rootfs + "/etc", withIntermediateDirectories: true)
        try fm.copyItem(atPath: "/bin/busybox", toPath: rootfs + "/bin/busybox")
        try fm.createSymbolicLink(atPath: rootfs + "/bin/sh", withDestinationPath: "/bin/busybox")
        try fm.createSymbolicLink(atPath: rootfs + "/bin/cat", withDestinationPath: "busybox")
        try "ID=\(id)\nVERSION_ID=\"24.04\"\n".write(
            toFile: rootfs + "/etc/os-release", atomically: true, encoding: .utf8)
    }

    /// A small stack-like root: busybox (static) for the tools, with a link for each applet in
    /// /bin and /usr/bin/env; this machine's bash with the libraries `ldd` says it needs, at the
    /// same paths; an os-release saying `id`. Nothing of Swift: multipack's debug binary can only
    /// run on it through this machine's loader.
    static func stackRoot(_ rootfs: String, id: String) throws {
        let fm = FileManager.default
        for directory in ["bin", "usr/bin", "etc", "opt", "var/tmp", "home"] {
            try fm.createDirectory(atPath: rootfs + "/" + directory, withIntermediateDirectories: true)
        }
        try fm.copyItem(atPath: "/bin/busybox", toPath: rootfs + "/bin/busybox")
        let applets = try Shell.run("/bin/busybox", ["--list"]).stdout.split(separator: "\n")
        for applet in applets where applet != "busybox" && applet != "bash" && !applet.contains("/") {
            try fm.createSymbolicLink(atPath: rootfs + "/bin/" + applet, withDestinationPath: "busybox")
        }
        try fm.createSymbolicLink(atPath: rootfs + "/usr/bin/env", withDestinationPath: "/bin/busybox")
        let bash = "/bin/bash"
        try copyResolved(bash, to: rootfs + "/bin/bash")
        for line in try Shell.run("ldd", [bash]).stdout.split(separator: "\n") {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let path = words.first(where: { $0.hasPrefix("/") }).map(String.init) else { continue }
            try fm.createDirectory(
                atPath: rootfs + (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try copyResolved(path, to: rootfs + path)
        }
        try "ID=\(id)\nVERSION_ID=\"24.04\"\nPRETTY_NAME=\"\(id)\"\n".write(
            toFile: rootfs + "/etc/os-release", atomically: true, encoding: .utf8)
        try "root:x:0:0::/root:/bin/sh\nheroku:x:1000:1000::/app:/bin/bash\n".write(
            toFile: rootfs + "/etc/passwd", atomically: true, encoding: .utf8)
        // A resolver of its own and no /etc/hosts, as debootstrap leaves a root.
        try "nameserver 192.0.2.1\n".write(toFile: rootfs + "/etc/resolv.conf", atomically: true, encoding: .utf8)
    }

    /// Copies the file a path leads to (its links followed) with its mode.
    private static func copyResolved(_ path: String, to target: String) throws {
        guard let real = realpath(path, nil) else { throw TestFailure("\(path) does not exist") }
        defer { free(real) }
        try FileManager.default.copyItem(atPath: String(cString: real), toPath: target)
    }

    private static func umoci(_ arguments: [String]) throws {
        let result = try Shell.run("umoci", arguments)
        if result.status != 0 { throw TestFailure("umoci \(arguments.joined(separator: " ")) failed: \(result.all)") }
    }
}

/// SHA-256 as 64 hex digits.
func sha256(_ bytes: [UInt8]) -> String {
    (try? sha256Hex(of: bytes)) ?? ""
}
