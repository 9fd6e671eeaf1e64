import FoundationEssentials
import Glibc

/// A stack image unpacked and ready for a build: the directory that is its root, and the digest
/// of the linux/amd64 manifest it was unpacked from. The root stays as it is while this value
/// lives (`stack prune` leaves a root in use alone); mount it read-only, `nosuid`, `nodev`.
public struct StackImage: Sendable {
    public var reference: ImageReference
    /// `sha256:…` of the image's linux/amd64 manifest: what the report and `--json` name.
    public var digest: String
    /// The image's `/`, a directory in the user's cache.
    public var root: String
    /// The image's config (its `Env` holds the PATH the image was made with).
    public var config: ImageConfig
    /// What is in the root.
    public var size: TreeSize
    /// True when this call downloaded it; false when it came from the cache.
    public var pulled: Bool
    let lease: StackLock
}

/// Pulls stack images over the OCI distribution API and unpacks them into the shared cache
/// (SPEC §15). `image(_:)` is what a build calls: warm, it costs one manifest request for a tag
/// (plus a token exchange) and none for a digest.
public struct StackPuller: Sendable {
    public var store: StackStore
    public var environment: [String: String]
    public var log: Log
    public var http: HTTPClient
    public var limits: RegistryLimits
    public var unpackLimits = LayerLimits.default
    /// Layers downloaded at once.
    public var parallelism = 3
    /// Whether the progress line is redrawn in place.
    public var terminal = PullProgress.outputIsTerminal

    /// A blob larger than this (a layer, the sum of an image's layers) is refused before any
    /// byte of it is fetched: heroku:24-build's largest layer is a few hundred MB.
    static let maxLayerBytes: Int64 = 8 << 30
    static let maxImageBytes: Int64 = 32 << 30

    /// With the deadlines of `MULTIPACK_FETCH_TIMEOUT` (SPEC §5).
    public init(environment: [String: String], log: Log, http: HTTPClient? = nil) throws(MultipackError) {
        self.store = StackStore(environment: environment)
        self.environment = environment
        self.log = log
        let settings = try Settings(configVars: [:], environment: environment)
        var limits = RegistryLimits()
        limits.timeout = .seconds(settings.fetchTimeout)
        if let seconds = environment[HiddenVariable.stallSeconds].flatMap(Int.init), seconds > 0 {
            limits.stallWindow = .seconds(seconds)
        }
        self.limits = limits
        self.http = http ?? HTTPClient(progressInterval: .milliseconds(500), firstProgress: .milliseconds(500))
    }

    /// The image of a Heroku stack: `heroku/heroku:<N>-build` (build) or `heroku/heroku:<N>` (run).
    public func image(forStack stack: String, role: ImageReference.StackRole) throws -> StackImage {
        try image(ImageReference.forStack(stack, role: role, environment: environment))
    }

    /// The image's root, from the cache when it is current there, else pulled and unpacked.
    public func image(_ image: ImageReference) throws -> StackImage {
        let machine = ImagePlatform.machine
        guard machine == "x86_64" else {
            throw StackError.pull(
                image,
                "This machine is \(machine), and Heroku's dynos run linux/amd64: a stack image would not run here.",
                hint:
                    "Build on an x86_64 (amd64) machine, or give --stack-root / to build on this machine's own system.")
        }
        try store.prepare()
        let shared = try StackLock.take(
            store.path + "/.lock", exclusive: false,
            waiting: { log.detail("Waiting for `multipack stack prune` to finish") })
        defer { withExtendedLifetime(shared) {} }
        if image.digest != nil, let cached = try cached(image) {
            return cached
        }
        let auth = RegistryAuth(
            credentials: RegistryCredentials.find(for: image.registry, environment: environment),
            challenge: store.challenge(for: image.registry))
        let client = RegistryClient(
            image: image, http: http, limits: limits, auth: auth, notice: { [log] in log.detail($0) })
        defer { store.remember(auth.challenge, for: image.registry) }
        if let tag = image.tag, image.digest == nil, let record = store.readRecord(image),
            store.completeRoot(record.digest) != nil
        {
            do {
                if try client.currentDigest(ofTag: tag) == record.resolved, let cached = try cached(image) {
                    return cached
                }
            } catch let error as StackError where error.kind == .unreachable {
                log.warning(
                    "The registry of \(image.shown) cannot be reached; using the copy pulled before "
                        + "(\(record.digest.prefix(19))…), which may be out of date.")
                if let cached = try cached(image) { return cached }
                throw error
            }
        }
        return try pull(image, client: client)
    }

    /// The image as the cache has it, with no request; nil when the cache does not have it whole.
    public func cached(_ image: ImageReference) throws -> StackImage? {
        var record = store.readRecord(image)
        // The lease first: once it is held, `stack prune` leaves the root alone.
        guard let digest = record?.digest ?? image.digest, Files.isDirectory(store.locks),
            let lease = try StackLock.take(store.lockFile(digest), exclusive: false, wait: false),
            let root = store.completeRoot(digest)
        else { return nil }
        let now = Int64(time(nil))
        if record == nil {
            record = ImageRecord(
                reference: image.canonical, digest: digest, resolved: digest, bytes: root.bytes, files: root.files,
                pulled: now, lastUsed: now)
        }
        record?.lastUsed = now
        if let record { try? store.write(record, for: image) }
        return StackImage(
            reference: image, digest: digest, root: store.rootfs(digest), config: root.image,
            size: TreeSize(bytes: root.bytes, files: root.files), pulled: false, lease: lease)
    }

    private func pull(_ image: ImageReference, client: RegistryClient) throws -> StackImage {
        log.step("Pulling the stack image \(image.shown)")
        let named = try client.manifest(image.manifestReference, what: "the manifest of \(image.written)")
        let (manifest, platform) = try platformManifest(named, client: client)
        let digest = platform.digest
        var root = store.completeRoot(digest)
        var lease: StackLock?
        if root == nil {
            let (config, configBytes) = try self.config(of: manifest, client: client)
            let lock = try StackLock.take(
                store.lockFile(digest), exclusive: true,
                waiting: { log.detail("Waiting for another multipack that is unpacking \(digest.prefix(19))…") })
            root = try store.completeRoot(digest) ?? unpack(manifest, digest: digest, config: config, client: client)
            try store.keep(configBytes, as: manifest.config.digest)
            lock?.share()
            lease = lock
        } else {
            log.detail("Already unpacked: \(digest)")
        }
        // Kept with the root only: a refused image leaves nothing behind.
        try store.keep(named.bytes, as: named.digest)
        try store.keep(platform.bytes, as: platform.digest)
        guard let root, let lease = try lease ?? StackLock.take(store.lockFile(digest), exclusive: false) else {
            throw StackError.pull(image, "Its root could not be locked for use.")
        }
        let now = Int64(time(nil))
        try store.write(
            ImageRecord(
                reference: image.canonical, digest: digest, resolved: named.digest, bytes: root.bytes,
                files: root.files,
                pulled: now, lastUsed: now),
            for: image)
        return StackImage(
            reference: image, digest: digest, root: store.rootfs(digest), config: root.image,
            size: TreeSize(bytes: root.bytes, files: root.files), pulled: true, lease: lease)
    }

    /// The linux/amd64 manifest: the one named, or the one an index names for that platform.
    private func platformManifest(
        _ named: FetchedManifest, client: RegistryClient
    ) throws -> (ImageManifest, FetchedManifest) {
        let image = client.image
        switch named.document {
        case .manifest(let manifest):
            return (manifest, named)
        case .index(let index):
            guard let entry = ImagePlatform.choose(from: index) else {
                let platforms = index.manifests.filter { !$0.isAttestation }.compactMap { $0.platform?.shown }
                throw StackError.pull(
                    image,
                    "The index has no \(ImagePlatform.shown) image, only "
                        + (platforms.isEmpty ? "entries without a platform" : platforms.joined(separator: ", ")) + ".",
                    hint: "Heroku's dynos run linux/amd64: name an image built for that platform.")
            }
            guard let digest = ImageReference.validDigest(entry.digest) else {
                throw StackError.pull(image, "Its index names the linux/amd64 manifest by a digest that is not sha256.")
            }
            let fetched = try client.manifest(digest, what: "the \(ImagePlatform.shown) manifest \(digest)")
            guard case .manifest(let manifest) = fetched.document else {
                throw StackError.pull(image, "Its index leads to another index, not to a manifest.")
            }
            return (manifest, fetched)
        }
    }

    /// The config, from the cache or the registry, checked to be for linux/amd64.
    private func config(of manifest: ImageManifest, client: RegistryClient) throws -> (ImageConfig, [UInt8]) {
        let image = client.image
        guard let digest = ImageReference.validDigest(manifest.config.digest),
            (0...limits.maxConfigBytes).contains(manifest.config.size)
        else {
            throw StackError.pull(
                image, "Its manifest names a config by a digest that is not sha256, or claims an impossible size.")
        }
        let bytes: [UInt8]
        if let path = store.verifiedBlob(digest), let cached = try? Files.readRegularFile(path) {
            bytes = cached
        } else {
            bytes = try client.smallBlob(manifest.config, what: "the config \(digest)")
        }
        guard let config = JSONDecoder.registry(ImageConfig.self, from: bytes) else {
            throw StackError.pull(image, "Its config \(digest) is not valid JSON.")
        }
        let platform = "\(config.os ?? "unknown")/\(config.architecture ?? "unknown")"
        guard platform == ImagePlatform.shown else {
            throw StackError.pull(
                image, "The image is for \(platform), and Heroku's dynos run linux/amd64.",
                hint: "Name an image (or an index) that has a linux/amd64 image.")
        }
        return (config, bytes)
    }

    /// Checks every layer's descriptor before any byte is fetched.
    private func checkLayers(_ manifest: ImageManifest, image: ImageReference) throws {
        guard !manifest.layers.isEmpty else { throw StackError.pull(image, "Its manifest has no layers.") }
        var total: Int64 = 0
        for layer in manifest.layers {
            guard ImageReference.validDigest(layer.digest) != nil else {
                throw StackError.pull(
                    image, "Its manifest names a layer by '\(layer.digest.prefix(80))', not a sha256 digest.")
            }
            guard (0...Self.maxLayerBytes).contains(layer.size) else {
                throw StackError.pull(
                    image, layer: layer.digest,
                    "the manifest says it is \(layer.size) bytes, more than the \(Self.maxLayerBytes) multipack accepts for a layer; nothing was downloaded."
                )
            }
            if let type = layer.mediaType, type.contains("nondistributable") || type.contains("foreign") {
                throw StackError.pull(
                    image, layer: layer.digest, "it is a foreign layer (\(type)), which registries do not serve.")
            }
            total += layer.size
        }
        guard total <= Self.maxImageBytes else {
            throw StackError.pull(
                image, "Its layers add up to \(total) bytes, more than the \(Self.maxImageBytes) multipack accepts.")
        }
    }

    /// Downloads the layers the cache lacks (in parallel) and applies them in order, each as soon
    /// as it is there, in a `.partial-` directory renamed into place when whole.
    private func unpack(
        _ manifest: ImageManifest, digest: String, config: ImageConfig, client: RegistryClient
    ) throws -> RootRecord {
        let image = client.image
        try checkLayers(manifest, image: image)
        let started = ContinuousClock.now
        let partial = try ScratchDirectory(prefix: StackStore.hex(digest) + StackStore.partial, in: store.roots)
        var kept = false
        var downloaded: [String] = []
        defer {
            if !kept {
                partial.remove()
                // The layers of a refused image go with it; those other images share stay.
                for blob in downloaded { Files.remove(blob) }
            }
        }
        let rootfs = partial.path + "/rootfs"
        try Files.makeDirectory(rootfs)
        chmod(rootfs, 0o755)

        let missing = manifest.layers.indices.filter { !Files.isRegularFile(store.blob(manifest.layers[$0].digest)) }
        let sizes = missing.map { manifest.layers[$0].size }
        let count = manifest.layers.count
        log.detail(
            "\(count) layer\(count == 1 ? "" : "s") (\(DownloadProgress.format(bytes: manifest.layers.reduce(0) { $0 + $1.size }))), "
                + (missing.isEmpty
                    ? "all in the cache"
                    : "\(missing.count) to download (\(DownloadProgress.format(bytes: sizes.reduce(0, +))))"))
        let progress = PullProgress(
            label: "Downloading \(missing.count) layer\(missing.count == 1 ? "" : "s")", sizes: sizes,
            terminal: terminal,
            write: { [log] in log.write($0, 1) })
        let downloads = LayerDownloads(
            layers: missing.map { manifest.layers[$0] }, store: store, client: client, width: parallelism,
            progress: progress)
        defer {
            downloads.cancelAndWait()
            if !kept { downloaded += downloads.completed }
        }

        var unpacker: LayerUnpacker
        do {
            unpacker = LayerUnpacker(
                root: try ArchiveDirectory.open(rootfs),
                limits: unpackLimits.fitting(compressedBytes: manifest.layers.reduce(0) { $0 + $1.size }))
        } catch {
            throw StackError.pull(image, "Its root could not be made in \(rootfs): \(ArchiveIOError.text(error)).")
        }
        for (position, layer) in manifest.layers.enumerated() {
            let shown = "\(layer.digest) (\(position + 1) of \(count))"
            do {
                let path: String
                if let slot = missing.firstIndex(of: position) {
                    path = try downloads.wait(for: slot)
                    if slot == missing.count - 1 { progress.close() }
                } else if let cached = store.verifiedBlob(layer.digest) {
                    path = cached
                } else {
                    path = try LayerDownloads.fetch(layer, store: store, client: client, progress: nil)
                    downloaded.append(path)
                }
                try unpacker.apply(layerAt: path)
            } catch let error as ArchiveError {
                throw StackError.pull(
                    image, layer: shown, error.message,
                    hint: "The image is damaged or was made to attack; nothing of it was kept.")
            } catch is StopRequested {
                throw StackError.pull(image, StackError.stoppedReason, kind: .stopped)
            } catch let error as ArchiveIOError {
                throw StackError.pull(image, layer: shown, "it could not be read from the cache: \(error.text).")
            }
        }
        downloads.cancelAndWait()
        let size = TreeWalk.measure(rootfs)
        let record = RootRecord(
            manifest: digest, config: manifest.config.digest, layers: manifest.layers.map(\.digest), bytes: size.bytes,
            files: size.files, image: config)
        try store.writeRoot(record, into: partial.path)
        let final = store.rootDirectory(digest)
        // Under the root's exclusive lock, whatever has this name is no whole root.
        if Files.lexists(final) { try Files.removeTree(final) }
        try Files.move(partial.path, to: final)
        kept = true
        partial.unlock()
        let seconds = (ContinuousClock.now - started).seconds
        log.detail(
            "Unpacked \(count) layer\(count == 1 ? "" : "s"): \(size.files) files, \(TreeSize.format(size.bytes)) "
                + "in \(formatSeconds(seconds))"
                + (unpacker.skipped > 0 ? " (\(unpacker.skipped) device nodes left out)" : ""))
        log.detail("Root: \(store.rootfs(digest))")
        return record
    }
}
