import Glibc

/// `multipack stack pull [REF ...] [--stack NAME]`: pulls images into the shared cache ahead of
/// builds (a CI's cache step, a laptop before a flight).
public struct StackPullCommand {
    public var references: [String]
    public var stack: String?
    public var invocation: Invocation

    public init(references: [String], stack: String?, invocation: Invocation) {
        self.references = references
        self.stack = stack
        self.invocation = invocation
    }

    public func run() throws {
        let env = invocation.environment
        var images = try references.map { text throws(MultipackError) in
            try ImageReference(parsing: text, environment: env)
        }
        if let stack {
            images.append(try .forStack(stack, role: .build, environment: env))
            images.append(try .forStack(stack, role: .run, environment: env))
        }
        if images.isEmpty { images = [try .forStack("heroku-24", role: .build, environment: env)] }
        let puller = try StackPuller(environment: env, log: invocation.log)
        for image in images {
            let pulled = try puller.image(image)
            let size = "\(TreeSize.format(pulled.size.bytes)), \(pulled.size.files) files"
            invocation.log.step(
                "\(image.written) is \(pulled.pulled ? "ready" : "up to date in the cache"): \(pulled.digest) (\(size))"
            )
            invocation.log.detail("Root: \(pulled.root)")
        }
    }
}

/// `multipack stack list`: what the cache holds, by name.
public struct StackListCommand {
    public var invocation: Invocation

    public init(invocation: Invocation) { self.invocation = invocation }

    public func run() throws {
        let store = StackStore(environment: invocation.environment)
        let log = invocation.log
        let records = store.allRecords()
        let named = Set(records.map(\.record.digest))
        let unnamed = Files.list(store.roots).filter { !$0.contains(".") && !named.contains("sha256:" + $0) }
        guard !records.isEmpty || !unnamed.isEmpty else {
            log.step("No stack image in \(store.path) yet.")
            log.detail("Try: multipack stack pull (heroku/heroku:24-build, ~1.1 GB unpacked)")
            return
        }
        log.step("Stack images in \(store.path) (\(TreeSize.format(TreeWalk.measure(store.path).bytes)) in all)")
        var rows = [["IMAGE", "DIGEST", "SIZE", "LAST USED"]]
        for (_, record) in records {
            let whole = store.completeRoot(record.digest) != nil
            rows.append([
                Self.familiar(record.reference), String(record.digest.prefix(19)),
                whole ? TreeSize.format(record.bytes) : "(not unpacked)", Self.date(record.lastUsed),
            ])
        }
        for hex in unnamed {
            let size = store.completeRoot("sha256:" + hex).map { TreeSize.format($0.bytes) } ?? "(partial)"
            rows.append(["(no name)", "sha256:" + hex.prefix(12), size, "-"])
        }
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            log.detail(
                zip(row, widths).map { $0 + String(repeating: " ", count: $1 - $0.count) }.joined(separator: "  ")
                    .trimmingBlanks())
        }
    }

    /// `registry-1.docker.io/library/ubuntu:24.04` → `ubuntu:24.04`, as Docker shows it.
    static func familiar(_ canonical: String) -> String {
        let hub = ImageReference.dockerHub + "/"
        guard canonical.hasPrefix(hub) else { return canonical }
        let name = canonical.dropFirst(hub.count)
        return String(name.hasPrefix("library/") ? name.dropFirst("library/".count) : name)
    }

    /// `2026-12-06 21:49 UTC`.
    static func date(_ seconds: Int64) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func two(_ value: Int32) -> String { String(value).leftPadded(to: 2) }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday)) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)) UTC"
    }
}

/// `multipack stack prune [--all] [--layers]`: removes what no name needs any more (the roots
/// of digests a tag no longer points to, their blobs, pulls killed half way); `--layers` also the
/// downloaded layers of the roots kept; `--all` everything. A root a build is using stays.
public struct StackPruneCommand {
    public var all: Bool
    public var layers: Bool
    public var invocation: Invocation

    public init(all: Bool, layers: Bool, invocation: Invocation) {
        self.all = all
        self.layers = layers
        self.invocation = invocation
    }

    public func run() throws {
        let store = StackStore(environment: invocation.environment)
        let log = invocation.log
        guard Files.isDirectory(store.path) else {
            log.step("Nothing to prune: there is no stack cache (\(store.path)).")
            return
        }
        try store.prepare()
        guard let exclusive = try StackLock.take(store.path + "/.lock", exclusive: true, wait: false) else {
            throw StackError(
                "A multipack pull is running and uses \(store.path).",
                hint: "Run `multipack stack prune` when it is done.")
        }
        defer { withExtendedLifetime(exclusive) {} }
        var keptRoots: Set<String> = []
        var keptBlobs: Set<String> = []
        var freed: Int64 = 0
        var removedRoots = 0
        var inUse = 0
        for (path, record) in store.allRecords() {
            if all || store.completeRoot(record.digest) == nil {
                Files.remove(path)
                continue
            }
            keptRoots.insert(StackStore.hex(record.digest))
            keptBlobs.insert(StackStore.hex(record.resolved))
        }
        for name in Files.list(store.roots) {
            let digest = "sha256:" + name
            if let root = store.completeRoot(digest), keptRoots.contains(name) {
                keptBlobs.formUnion(([root.manifest, root.config] + (layers ? [] : root.layers)).map(StackStore.hex))
                continue
            }
            guard let lock = try StackLock.take(store.lockFile(digest), exclusive: true, wait: false) else {
                inUse += 1
                if let root = store.completeRoot(digest) {
                    keptBlobs.formUnion(([root.manifest, root.config] + root.layers).map(StackStore.hex))
                }
                continue
            }
            freed += TreeWalk.measure(store.rootDirectory(digest)).bytes
            try Files.removeTree(store.rootDirectory(digest))
            Files.remove(store.lockFile(digest))
            withExtendedLifetime(lock) {}
            removedRoots += 1
        }
        var removedBlobs = 0
        for name in Files.list(store.blobs) where !keptBlobs.contains(name) {
            freed += Files.size(store.blobs + "/" + name)
            Files.remove(store.blobs + "/" + name)
            removedBlobs += 1
        }
        if all { Files.remove(store.registries) }
        log.step(
            "Pruned \(store.path): \(removedRoots) root\(removedRoots == 1 ? "" : "s") and \(removedBlobs) "
                + "blob\(removedBlobs == 1 ? "" : "s") removed, \(TreeSize.format(freed)) freed")
        if inUse > 0 { log.detail("\(inUse) root\(inUse == 1 ? " is" : "s are") in use by a build and stay.") }
    }
}
