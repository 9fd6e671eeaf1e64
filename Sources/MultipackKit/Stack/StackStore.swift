import FoundationEssentials
import Glibc

/// The stack images kept for every app, under the user's cache directory (SPEC §15):
///
///     stacks/blobs/sha256/<hex>              manifests, configs and layers, checked against their digest
///     stacks/roots/sha256/<hex>/rootfs/      an image's unpacked root, by its linux/amd64 manifest's digest
///     stacks/roots/sha256/<hex>/image.json   what went into it (config, layers, size)
///     stacks/locks/<hex>.lock                a root's lock: a pull making it (exclusive), a build using it (shared)
///     stacks/images/<key>.json               a name (tag or digest) → the digest it gave, size, last use
///     stacks/registries/<host>.json          a registry's token service (realm and service, no secret)
///     stacks/.lock                           shared by pulls, exclusive for `stack prune`
///
/// Everything is made under a `.partial-<pid>-XXXXXX` name, locked by its maker, and renamed into
/// place when whole; what a killed pull left is swept by the next (SPEC §5). A root exists under
/// its final name only once every layer is in it, so nothing half made is ever trusted; an image
/// refused leaves nothing (its manifests and config are kept only with its root).
public struct StackStore: Sendable {
    public let path: String

    public init(path: String) {
        self.path = path
    }

    /// `$XDG_CACHE_HOME/multipack/stacks`, or `~/.cache/multipack/stacks`: beside the apps' state.
    public init(environment: [String: String]) {
        let apps = LocalState.appsRoot(environment)
        self.init(path: String(apps.dropLast("apps".count)) + "stacks")
    }

    var blobs: String { path + "/blobs/sha256" }
    var roots: String { path + "/roots/sha256" }
    var images: String { path + "/images" }
    var registries: String { path + "/registries" }
    var locks: String { path + "/locks" }

    static let partial = ".partial-"

    func blob(_ digest: String) -> String { "\(blobs)/\(Self.hex(digest))" }
    func rootDirectory(_ digest: String) -> String { "\(roots)/\(Self.hex(digest))" }
    func rootfs(_ digest: String) -> String { rootDirectory(digest) + "/rootfs" }
    func lockFile(_ digest: String) -> String { "\(locks)/\(Self.hex(digest)).lock" }
    func record(for image: ImageReference) -> String {
        "\(images)/\((try? sha256Hex(of: Array(image.canonical.utf8)))?.prefix(24) ?? "unnamed").json"
    }

    static func hex(_ digest: String) -> String { String(digest.dropFirst("sha256:".count)) }

    /// Makes the directories and sweeps what dead pulls left in them.
    func prepare() throws {
        for directory in [blobs, roots, images, registries, locks] {
            try Files.makeDirectory(directory)
            ScratchDirectory.sweep(prefixes: [Self.partial], in: directory, containing: true)
        }
    }

    /// The root unpacked from the manifest `digest`, when it is whole.
    func completeRoot(_ digest: String) -> RootRecord? {
        guard let bytes = try? Files.readRegularFile(rootDirectory(digest) + "/image.json"),
            let record = try? JSONDecoder().decode(RootRecord.self, from: Data(bytes)),
            record.manifest == digest, Files.isDirectory(rootfs(digest))
        else { return nil }
        return record
    }

    /// A blob of the cache, checked again against its digest before it is used; a damaged one is
    /// removed (it is fetched again).
    func verifiedBlob(_ digest: String) -> String? {
        let path = blob(digest)
        guard Files.isRegularFile(path, followingLinks: false) else { return nil }
        guard (try? "sha256:" + sha256Hex(ofFile: path)) == digest else {
            Files.remove(path)
            return nil
        }
        return path
    }

    /// Keeps `bytes` as the blob `digest` (already checked by the caller).
    func keep(_ bytes: [UInt8], as digest: String) throws {
        try Files.replaceWhole(blob(digest), mode: 0o644) { temporary in
            let descriptor = open(temporary, O_WRONLY | O_TRUNC | O_CLOEXEC)
            guard descriptor >= 0 else { throw FileError(path: temporary, action: "write", errno: errno) }
            defer { close(descriptor) }
            guard Files.writeAll(bytes, to: descriptor) else {
                throw FileError(path: temporary, action: "write", errno: errno)
            }
        }
    }

    func readRecord(_ image: ImageReference) -> ImageRecord? {
        readRecord(at: record(for: image))
    }

    func readRecord(at path: String) -> ImageRecord? {
        guard let bytes = try? Files.readRegularFile(path) else { return nil }
        return try? JSONDecoder().decode(ImageRecord.self, from: Data(bytes))
    }

    func write(_ record: ImageRecord, for image: ImageReference) throws {
        try Files.write(String(decoding: try JSONEncoder().encode(record), as: UTF8.self), to: self.record(for: image))
    }

    func writeRoot(_ record: RootRecord, into directory: String) throws {
        try Files.write(
            String(decoding: try JSONEncoder().encode(record), as: UTF8.self), to: directory + "/image.json")
    }

    /// Every record, sorted by name.
    func allRecords() -> [(path: String, record: ImageRecord)] {
        Files.list(images).filter { $0.hasSuffix(".json") }.compactMap { name in
            let path = images + "/" + name
            return readRecord(at: path).map { (path, $0) }
        }.sorted { $0.record.reference < $1.record.reference }
    }

    /// The token service a registry named last time, so that a warm pull asks for a token first
    /// and the manifest once.
    func challenge(for registry: String) -> AuthChallenge? {
        guard let bytes = try? Files.readRegularFile(registryFile(registry)) else { return nil }
        return try? JSONDecoder().decode(AuthChallenge.self, from: Data(bytes))
    }

    func remember(_ challenge: AuthChallenge?, for registry: String) {
        // The scope named one repository; another one's pull asks for its own.
        guard var challenge else { return }
        challenge.parameters["scope"] = nil
        challenge.parameters["error"] = nil
        guard challenge != self.challenge(for: registry), let data = try? JSONEncoder().encode(challenge) else {
            return
        }
        try? Files.write(String(decoding: data, as: UTF8.self), to: registryFile(registry))
    }

    private func registryFile(_ registry: String) -> String {
        registries + "/" + registry.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" ? $0 : "_" } + ".json"
    }
}

/// What a name gave when it was pulled: `stack list` shows it, a warm pull compares with it.
struct ImageRecord: Codable, Sendable, Equatable {
    /// `registry/repository:tag` or `…@sha256:…`.
    var reference: String
    /// The linux/amd64 manifest's digest: the root's name.
    var digest: String
    /// The digest the name resolved to, when it is an index (else the manifest's).
    var resolved: String
    var bytes: Int64
    var files: Int
    /// Seconds since 1970.
    var pulled: Int64
    var lastUsed: Int64
}

/// What went into an unpacked root, kept beside it.
struct RootRecord: Codable, Sendable, Equatable {
    var manifest: String
    var config: String
    var layers: [String]
    var bytes: Int64
    var files: Int
    var image: ImageConfig
}

/// A lock on a file, released when the value goes.
final class StackLock: Sendable {
    private let descriptor: Int32

    private init(descriptor: Int32) { self.descriptor = descriptor }

    deinit { close(descriptor) }

    /// Takes the lock at `path` (made when missing), waiting while another holds it in a way that
    /// excludes this one, unless `wait` is false (then nil); `waiting` is called once, when it must.
    static func take(
        _ path: String, exclusive: Bool, wait: Bool = true, waiting: () -> Void = {}
    ) throws -> StackLock? {
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw FileError(path: path, action: "open", errno: errno) }
        let operation = (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB
        var announced = false
        while flock(descriptor, operation) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR, wait, !StopToken.signals.isRequested else {
                close(descriptor)
                try StopToken.signals.check()
                return nil
            }
            if !announced {
                waiting()
                announced = true
            }
            var pause = timespec(tv_sec: 0, tv_nsec: 100_000_000)
            nanosleep(&pause, nil)
        }
        return StackLock(descriptor: descriptor)
    }

    /// Keeps the lock, shared from now on (a root made becomes a root in use).
    func share() { flock(descriptor, LOCK_SH) }
}
