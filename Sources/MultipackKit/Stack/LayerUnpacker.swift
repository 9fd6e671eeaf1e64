/// Caps on an unpacked image: far above Heroku's (heroku:24-build is ~1.1 GB in ~50,000 entries),
/// low enough that a hostile layer cannot fill the disk without end.
public struct LayerLimits: Sendable, Equatable {
    /// Bytes of file content, all layers together.
    public var maxBytes: Int64
    /// Members, all layers together.
    public var maxEntries: Int

    public init(maxBytes: Int64, maxEntries: Int) {
        self.maxBytes = maxBytes
        self.maxEntries = maxEntries
    }

    public static let `default` = LayerLimits(maxBytes: 32 << 30, maxEntries: 1_000_000)

    /// These limits, and no more than 32 times the image's compressed size plus 1 GiB: a layer
    /// that inflates a thousandfold (a gzip bomb) is stopped long before the disk is full, while
    /// real images (heroku:24-build inflates about threefold) are far below.
    func fitting(compressedBytes: Int64) -> LayerLimits {
        let (scaled, overflow) = compressedBytes.multipliedReportingOverflow(by: 32)
        var limits = self
        if !overflow { limits.maxBytes = min(maxBytes, scaled + (1 << 30)) }
        return limits
    }
}

/// Applies an image's layers, bottom first, to a root directory, rootless, with a root
/// filesystem's rules (SPEC §15): member paths are paths inside the root (a leading `/` means the
/// image's root, `..` is refused); links are stored as written and never followed, so an absolute
/// symlink points into the image once it is the root, never at the host; nothing is written
/// through a symlink; a layer replaces what lower layers had at a path, a type change included;
/// whiteouts (`.wh.NAME`, `.wh..wh..opq`) hide lower layers' entries whatever their place in the
/// layer, and are never written out; hard links stay inside the root; device nodes and fifos are
/// skipped; setuid/setgid bits (and xattrs, which the reader never applies) are dropped; owners are
/// the caller. Every check costs one step per path component, and each directory is cleaned at
/// most once per layer, so time and memory stay linear.
struct LayerUnpacker {
    let root: ArchiveDirectory
    let limits: LayerLimits
    private(set) var entries = 0
    private(set) var bytes: Int64 = 0
    /// Device nodes and fifos left out.
    private(set) var skipped = 0

    /// What the current layer has made or passed through, one node per path: what a whiteout
    /// must leave alone.
    private var tree = PathTree()
    /// Directories of the current layer already rid of everything lower layers had in them.
    private var cleaned: Set<Int> = []
    /// Open directories by node of the current layer. Nothing removes a directory the layer
    /// made or passed through, so a descriptor always names what it was opened as.
    private var directories: [Int: ArchiveDirectory] = [:]

    init(root: ArchiveDirectory, limits: LayerLimits = .default) {
        self.root = root
        self.limits = limits
    }

    /// Applies the layer at `path` (tar, gzip, zstd or xz, told by its first bytes).
    mutating func apply(layerAt path: String) throws {
        let file = try ArchiveFile.openForReading(path)
        let magic = try file.prefix(6)
        tree = PathTree()
        cleaned = []
        directories = [:]
        defer { directories = [:] }
        if magic.starts(with: [0x28, 0xb5, 0x2f, 0xfd]) {
            var reader = reader(try ZstdSource(FileSource(handle: file)))
            try run(&reader)
            return
        }
        switch CompressionFormat(magic: magic) {
        case .gzip:
            var reader = reader(try GzipSource(FileSource(handle: file)))
            try run(&reader)
        case .xz:
            var reader = reader(try XzSource(FileSource(handle: file)))
            try run(&reader)
        case .none:
            var reader = reader(FileSource(handle: file))
            try run(&reader)
        }
    }

    private func reader<S: ByteSource>(_ source: S) -> TarReader<S> {
        TarReader(source, maxHeaders: 2 * limits.maxEntries, maxMetadataBytes: limits.maxBytes)
    }

    private mutating func run<S: ByteSource>(_ reader: inout TarReader<S>) throws {
        while let entry = try reader.next() {
            try StopToken.signals.check()
            try apply(entry, from: &reader)
        }
        try reader.finish(readingAtMost: 16 << 20)
    }

    private mutating func apply<S: ByteSource>(_ entry: TarEntry, from reader: inout TarReader<S>) throws {
        let member = ArchiveError.cut(entry.path)
        entries += 1
        guard entries <= limits.maxEntries else {
            throw ArchiveError(
                .limitExceeded, member: member,
                "The image has more than \(limits.maxEntries) members; refused at member '\(member)'.")
        }
        guard entry.namesAreUTF8 else { throw Self.unsafe(member, "its name or link target is not valid UTF-8") }
        // A root's members may be written `/usr/bin` or `./usr/bin`: both are the image's /usr/bin.
        let relative = String(entry.path.drop { $0 == "/" })
        let components = try Extractor.components(of: relative.isEmpty ? "." : relative, member: member)
        guard let name = components.last else {
            if entry.kind == .directory { return }  // "./" itself
            throw Self.unsafe(member, "its path is empty")
        }
        let parents = components.dropLast()
        if name.hasPrefix(".wh.") {
            return try whiteOut(name, in: parents, member: member)
        }
        if case .other(let flag) = entry.kind {
            // Devices and fifos have no place in an unprivileged root; the kernel would refuse them.
            guard [UInt8(ascii: "3"), UInt8(ascii: "4"), UInt8(ascii: "6")].contains(flag) else {
                throw ArchiveError(
                    .unsupportedMember, member: member,
                    "Refused member '\(member)': it is of type '\(Self.shown(flag))', and only files, directories, links and devices are known."
                )
            }
            skipped += 1
            return
        }
        guard let parentNode = try directoryNode(parents, member: member, creating: true) else { return }
        let parent = try descriptor(parentNode, member: member)
        // Within one layer, as in any archive (SPEC §6); across layers, the upper one wins.
        let kind: PathTree.Kind =
            entry.kind == .directory ? .directory : entry.kind == .symlink ? .symlink("") : .file
        if let existing = tree.child(of: parentNode, named: name), tree.kinds[existing] != kind {
            throw Self.unsafe(
                member,
                "an earlier member of the same layer put \(tree.kinds[existing].noun) at this path, and this member is \(kind.noun)"
            )
        }
        try Self.system(member) {
            switch entry.kind {
            case .directory:
                let node = tree.set(name, in: parentNode, to: .directory)
                let directory = try openDirectory(name, in: parent, node: node, replacing: true, member: member)
                try directory.handle.setMode(Self.mode(entry.mode) | 0o700)
            case .file:
                guard bytes + entry.size + reader.metadataBytes <= limits.maxBytes else {
                    throw ArchiveError(
                        .limitExceeded, member: member,
                        "The image holds more than \(limits.maxBytes) bytes; refused at member '\(member)'.")
                }
                try parent.removeTree(name)
                let file = try parent.createFile(name)
                try reader.readContent { buffer, range in
                    try StopToken.signals.check()
                    try file.write(buffer, range)
                }
                try file.setMode(Self.mode(entry.mode))
                try file.setModificationTime(entry.mtime)
                tree.set(name, in: parentNode, to: .file)
                bytes += entry.size
            case .symlink:
                let target = entry.linkTarget
                guard !target.isEmpty, !target.utf8.contains(0), target.utf8.count <= Extractor.maxPathBytes else {
                    throw Self.unsafe(
                        member,
                        "it is a symlink whose target is empty, holds a NUL or is longer than \(Extractor.maxPathBytes) bytes"
                    )
                }
                try parent.removeTree(name)
                try parent.makeSymlink(name, target: target)
                tree.set(name, in: parentNode, to: .symlink(""))
            case .hardLink:
                let (directory, targetName, target) = try linkTarget(entry.linkTarget, member: member)
                guard target != components else { throw Self.unsafe(member, "it is a hard link to itself") }
                guard try directory.kind(of: targetName) == .regular else {
                    throw Self.unsafe(
                        member,
                        "it is a hard link to '\(ArchiveError.cut(entry.linkTarget))', which is not a file in the image"
                    )
                }
                try parent.removeTree(name)
                try parent.makeHardLink(name, to: targetName, in: directory)
                tree.set(name, in: parentNode, to: .file)
            case .other:
                break
            }
        }
    }

    /// `.wh.NAME` hides NAME of lower layers; `.wh..wh..opq` hides everything lower layers put in
    /// its directory. What this layer itself puts there stays, before the whiteout or after it.
    private mutating func whiteOut(_ name: String, in parents: ArraySlice<String>, member: String) throws {
        try Self.system(member) {
            guard let parentNode = try directoryNode(parents, member: member, creating: false) else { return }
            if name == ".wh..wh..opq" {
                return try clean(parentNode, member: member)
            }
            // Other `.wh..wh.` names are aufs' own bookkeeping, not whiteouts.
            if name.hasPrefix(".wh..wh.") { return }
            let hidden = String(name.dropFirst(4))
            guard !hidden.isEmpty, hidden != ".", hidden != ".." else {
                throw Self.unsafe(member, "it is a whiteout of '\(hidden)', which names nothing in its directory")
            }
            if let own = tree.child(of: parentNode, named: hidden) {
                if tree.kinds[own] == .directory { try clean(own, member: member) }
                return
            }
            try descriptor(parentNode, member: member).removeTree(hidden)
        }
    }

    /// Removes from the directory `node`, and from every directory of this layer below it, what
    /// lower layers put there.
    private mutating func clean(_ node: Int, member: String) throws {
        var pending = [node]
        while let next = pending.popLast() {
            guard cleaned.insert(next).inserted else { continue }
            let directory = try descriptor(next, member: member)
            for entry in try directory.entries() {
                if let own = tree.child(of: next, named: entry.name) {
                    if tree.kinds[own] == .directory { pending.append(own) }
                } else {
                    try directory.removeTree(entry.name)
                }
            }
        }
    }

    /// The node of the directory at `components`, each level checked on disk where this layer has
    /// not been yet: a missing one is made (or, without `creating`, nil is returned); a symlink or
    /// a file on the way is refused, since nothing is written through a symlink.
    private mutating func directoryNode(
        _ components: ArraySlice<String>, member: String, creating: Bool
    ) throws -> Int? {
        var node = PathTree.root
        for (depth, name) in zip(components.indices, components) {
            let path = { ArchiveError.cut(components[...depth].joined(separator: "/")) }
            if let next = tree.child(of: node, named: name) {
                switch tree.kinds[next] {
                case .directory: node = next
                case .symlink:
                    throw Self.unsafe(member, "'\(path())' is a symlink, and nothing is written through a symlink")
                case .file: throw Self.unsafe(member, "'\(path())' is a file, not a directory")
                }
                continue
            }
            let parent = try descriptor(node, member: member)
            switch try Self.system(member, { try parent.kind(of: name) }) {
            case nil:
                guard creating else { return nil }
            case .directory:
                break
            case .symlink:
                throw Self.unsafe(
                    member, "'\(path())' is a symlink in the image, and nothing is written through a symlink")
            default:
                throw Self.unsafe(member, "'\(path())' is a file in the image, not a directory")
            }
            let next = tree.set(name, in: node, to: .directory)
            _ = try Self.system(member) {
                try openDirectory(name, in: parent, node: next, replacing: false, member: member)
            }
            node = next
        }
        return node
    }

    /// An open descriptor for a directory node, opened level by level from the nearest open one.
    private mutating func descriptor(_ node: Int, member: String) throws -> ArchiveDirectory {
        if node == PathTree.root { return root }
        if let open = directories[node] { return open }
        let (top, below) = tree.way(to: node) { directories[$0] != nil }
        var directory = directories[top] ?? root
        for next in below {
            let name = tree.name(of: next)
            directory = try Self.system(member) {
                try openDirectory(name, in: directory, node: next, replacing: false, member: member)
            }
        }
        return directory
    }

    /// Opens (making it, 0755, when missing) the directory `name`; with `replacing`, whatever
    /// else a lower layer left at that name goes first.
    private mutating func openDirectory(
        _ name: String, in parent: ArchiveDirectory, node: Int, replacing: Bool, member: String
    ) throws -> ArchiveDirectory {
        var made = true
        switch try parent.kind(of: name) {
        case .directory:
            made = false
        case nil:
            try parent.makeDirectory(name)
        default:
            guard replacing else {
                throw Self.unsafe(
                    member, "'\(name)' is no longer a directory, and nothing is written through a symlink")
            }
            try parent.remove(name)
            try parent.makeDirectory(name)
        }
        let directory = try parent.openSubdirectory(name)
        if made { try directory.handle.setMode(0o755) }
        if directories.count >= 128 { directories.removeAll(keepingCapacity: true) }
        directories[node] = directory
        return directory
    }

    /// The directory holding a hard link's target and the target's name, reached from the root
    /// without following any symlink.
    private func linkTarget(
        _ target: String, member: String
    ) throws -> (directory: ArchiveDirectory, name: String, components: [String]) {
        let relative = String(target.drop { $0 == "/" })
        let components = try Extractor.components(of: relative, member: member)
        guard let name = components.last else { throw Self.unsafe(member, "it is a hard link with an empty target") }
        var directory = root
        for part in components.dropLast() {
            do {
                directory = try directory.openSubdirectory(part)
            } catch {
                throw Self.unsafe(
                    member,
                    "it is a hard link to '\(ArchiveError.cut(target))', which is not a file in the image (or lies behind a symlink)"
                )
            }
        }
        return (directory, name, components)
    }

    /// Permission bits without setuid and setgid (the sticky bit of /tmp stays).
    private static func mode(_ mode: UInt32) -> UInt32 { mode & 0o1777 }

    private static func unsafe(_ member: String, _ why: String) -> ArchiveError {
        ArchiveError(.unsafeMember, member: member, "Refused member '\(member)': \(why).")
    }

    private static func shown(_ flag: UInt8) -> String {
        (0x21...0x7e).contains(flag) ? String(UnicodeScalar(flag)) : "\\(\(flag))"
    }

    /// Runs file system calls, turning an OS failure into a sentence naming the member.
    private static func system<T>(_ member: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as ArchiveIOError {
            if error.isSymlinkLoop || error.isNotDirectory {
                throw unsafe(member, "a part of its path is a symlink or a file (\(error.text))")
            }
            throw ArchiveError(.system, member: member, "Could not unpack member '\(member)': \(error.text).")
        }
    }
}
