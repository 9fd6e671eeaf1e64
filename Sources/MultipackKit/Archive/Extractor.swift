/// Extracts a `.tar`, `.tar.gz` or `.tar.xz` (told apart by their first bytes) into the existing
/// directory `destination`, streaming with constant memory.
///
/// Members that would write or point outside `destination` are refused with an `ArchiveError`
/// naming them: absolute paths, `..` components, symlinks that resolve outside, hard links to
/// anything but a file extracted before, writing through a symlink, devices, fifos and other
/// special types, and archives beyond `limits`. A truncated or corrupt archive is an error too.
///
/// Nothing is ever written outside `destination`, but an error can leave it half filled: extract
/// into a fresh temporary directory and delete it when this throws.
///
/// Files get mode 0755 when the archive gives them any executable bit and 0644 otherwise,
/// directories 0755, whatever the umask.
///
/// A `.slug` keeps its symlinks as they are, whatever they point to (SPEC §17), and every member
/// must be under `app/`.
@discardableResult
public func extractArchive(
    atPath path: String, into destination: String, limits: ArchiveLimits = .default, kind: ArchiveKind = .buildpack,
    stop: StopToken = .signals
) throws -> ExtractionSummary {
    let file: ArchiveFile
    let root: ArchiveDirectory
    let magic: [UInt8]
    do {
        file = try ArchiveFile.openForReading(path)
        magic = try file.prefix(6)
    } catch {
        throw ArchiveError(.system, "Could not open the archive '\(path)': \(ArchiveIOError.text(error)).")
    }
    do {
        root = try ArchiveDirectory.open(destination)
    } catch {
        throw ArchiveError(
            .system, "Could not open the extraction directory '\(destination)': \(ArchiveIOError.text(error)).")
    }
    var extractor = Extractor(root: root, limits: limits, kind: kind, stop: stop)
    switch CompressionFormat(magic: magic) {
    case .gzip:
        var reader = extractor.reader(try GzipSource(FileSource(handle: file)))
        try extractor.run(&reader)
    case .xz:
        var reader = extractor.reader(try XzSource(FileSource(handle: file)))
        try extractor.run(&reader)
    case .none:
        var reader = extractor.reader(FileSource(handle: file))
        try extractor.run(&reader)
    }
    return extractor.summary
}

/// What an archive holds, which decides how its symlinks are judged.
public enum ArchiveKind: Sendable {
    /// A buildpack: a symlink that resolves outside the archive is refused (SPEC §6).
    case buildpack
    /// A slug (`./app/…`, run at `/app`): symlinks are kept as written, whatever they point to (a
    /// Python virtualenv links `/app/.heroku/python/bin/python3`; absolute links into /app are
    /// normal). Nothing is still ever written through one, and no member's path leaves `app/`.
    case slug
}

/// The directory that holds the buildpack in an extracted archive: `dir` itself, unless it has no
/// `bin/` but exactly one entry, a directory that has one (GitHub's `repo-ref/` archives).
public func buildpackRoot(in dir: String) -> String {
    if ArchiveTree.exists(dir + "/bin") { return dir }
    guard let names = try? ArchiveTree.contents(of: dir), names.count == 1 else { return dir }
    let top = dir + "/" + names[0]
    guard (try? ArchiveTree.info(top).kind) == .directory, ArchiveTree.exists(top + "/bin") else { return dir }
    return top
}

/// Bytes read after the end-of-archive marker to let the decompressor check its trailer; tar
/// pads to 10 KiB records, so this is generous.
private let maxTrailingBytes: Int64 = 16 << 20

/// Writes members below `root` through directory descriptors, never following a symlink.
struct Extractor {
    /// SPEC §6: longer or deeper member paths (and symlink targets) are refused.
    static let maxPathBytes = 4096
    static let maxComponents = 256
    /// NAME_MAX: the kernel refuses a longer component anyway; refusing it first names the member.
    static let maxNameBytes = 255

    let root: ArchiveDirectory
    let limits: ArchiveLimits
    let kind: ArchiveKind
    /// A signal must stop even a huge archive within seconds (SPEC §11).
    let stop: StopToken
    private(set) var summary = ExtractionSummary(entries: 0, bytes: 0)
    private var tree = PathTree()
    /// Open directories by tree node. Directories are never removed or replaced, so a cached
    /// descriptor always names the directory it was opened as.
    private var directories: [Int: ArchiveDirectory] = [:]

    init(root: ArchiveDirectory, limits: ArchiveLimits, kind: ArchiveKind = .buildpack, stop: StopToken) {
        self.root = root
        self.limits = limits
        self.kind = kind
        self.stop = stop
    }

    func reader<S: ByteSource>(_ source: S) -> TarReader<S> {
        TarReader(source, maxHeaders: 2 * limits.maxEntries, maxMetadataBytes: limits.maxTotalBytes)
    }

    mutating func run<S: ByteSource>(_ reader: inout TarReader<S>) throws {
        while let entry = try reader.next() {
            try stop.check()
            try extract(entry, from: &reader)
        }
        try reader.finish(readingAtMost: maxTrailingBytes)
        guard kind == .buildpack else { return }
        // Later members can change where earlier symlinks lead; check them all on the final tree.
        for node in tree.symlinks {
            guard case .symlink(let target) = tree.kinds[node] else { continue }
            try Self.check(tree.resolveSymlink(node), member: path(of: node), target: target)
        }
    }

    private mutating func extract<S: ByteSource>(_ entry: TarEntry, from reader: inout TarReader<S>) throws {
        let member = ArchiveError.cut(entry.path)
        summary.entries += 1
        guard summary.entries <= limits.maxEntries else {
            throw ArchiveError(
                .limitExceeded, member: member,
                "The archive has more than \(limits.maxEntries) members; refused at member '\(member)'.")
        }
        if !entry.namesAreUTF8 {
            throw ArchiveError.unsafe(member, "its name or link target is not valid UTF-8")
        }
        let components = try Self.components(of: entry.path, member: member)
        if case .other(let flag) = entry.kind {
            throw ArchiveError(
                .unsupportedMember, member: member,
                "Refused archive member '\(member)': it is \(Self.describe(flag)), and only files, directories and links are extracted."
            )
        }
        guard let name = components.last else {
            if entry.kind == .directory { return }  // "./" itself
            throw ArchiveError.unsafe(member, "its path is empty")
        }
        if kind == .slug && components.first != "app" {
            throw ArchiveError.unsafe(member, "it is not under ./app/, where a slug's files are")
        }
        if kind == .slug && components.count == 1 && entry.kind != .directory {
            throw ArchiveError.unsafe(member, "./app itself must be a directory in a slug")
        }
        let parentNode = try directoryNode(components.dropLast(), member: member)
        let parent = try descriptor(parentNode, member: member)
        let existing = tree.child(of: parentNode, named: name)
        try Self.system(member) {
            switch entry.kind {
            case .directory:
                if let existing, tree.kinds[existing] == .directory { return }
                try collide(existing, with: .directory, member: member)
                _ = try makeDirectory(name, in: parent, parentNode: parentNode, member: member)
            case .file:
                let total = summary.bytes + entry.size + reader.metadataBytes
                guard total <= limits.maxTotalBytes else {
                    throw ArchiveError(
                        .limitExceeded, member: member,
                        "The archive holds more than \(limits.maxTotalBytes) bytes; refused at member '\(member)'.")
                }
                try collide(existing, with: .file, member: member)
                try clear(name, in: parent, member: member)
                let file = try parent.createFile(name)
                try reader.readContent { buffer, range in
                    try stop.check()
                    try file.write(buffer, range)
                }
                try file.setMode(entry.mode & 0o111 != 0 ? 0o755 : 0o644)
                tree.set(name, in: parentNode, to: .file)
                summary.bytes += entry.size
            case .symlink:
                let target = entry.linkTarget
                guard !target.isEmpty, !target.utf8.contains(0) else {
                    throw ArchiveError.unsafe(member, "it is a symlink with an empty or NUL-holding target")
                }
                let shown = ArchiveError.cut(target)
                guard target.utf8.count <= Self.maxPathBytes,
                    target.split(separator: "/").count <= Self.maxComponents
                else {
                    throw ArchiveError.unsafe(
                        member,
                        "it is a symlink to '\(shown)', longer than \(Self.maxPathBytes) bytes or \(Self.maxComponents) components"
                    )
                }
                if kind == .buildpack {
                    try Self.check(
                        tree.resolve(target, from: PathTree.Position(node: parentNode)), member: member, target: target)
                }
                try collide(existing, with: .symlink(target), member: member)
                try clear(name, in: parent, member: member)
                try parent.makeSymlink(name, target: target)
                tree.set(name, in: parentNode, to: .symlink(target))
            case .hardLink:
                let targetParts = try Self.components(of: entry.linkTarget, member: member)
                guard targetParts != components, file(at: targetParts) != nil else {
                    throw ArchiveError.unsafe(
                        member,
                        "it is a hard link to '\(ArchiveError.cut(entry.linkTarget))', which is not a file extracted before it"
                    )
                }
                try collide(existing, with: .file, member: member)
                try clear(name, in: parent, member: member)
                try parent.makeHardLink(name, to: targetParts.joined(separator: "/"), in: root)
                tree.set(name, in: parentNode, to: .file)
            case .other:
                break
            }
        }
    }

    /// Turns a member path into components, refusing the ones that could leave the root or that
    /// exceed SPEC §6's bounds. `member` is the path as shown in messages.
    static func components(of path: String, member: String) throws -> [String] {
        if path.hasPrefix("/") {
            throw ArchiveError.unsafe(member, "its path '\(member)' is absolute")
        }
        // A pax value can hold a NUL; the C calls would cut the name there, behind our checks.
        if path.utf8.contains(0) {
            throw ArchiveError.unsafe(member, "its path contains a NUL byte")
        }
        if path.utf8.count > maxPathBytes {
            throw ArchiveError.unsafe(
                member, "its path is \(path.utf8.count) bytes long, more than the \(maxPathBytes) allowed")
        }
        var result: [String] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) where part != "." {
            if part == ".." {
                throw ArchiveError.unsafe(member, "its path '\(member)' contains '..'")
            }
            if part.utf8.count > maxNameBytes {
                throw ArchiveError.unsafe(member, "a name in its path is longer than \(maxNameBytes) bytes")
            }
            result.append(String(part))
            if result.count > maxComponents {
                throw ArchiveError.unsafe(member, "its path is deeper than \(maxComponents) directories")
            }
        }
        return result
    }

    private static func check(_ resolution: PathTree.Resolution, member: String, target: String) throws {
        switch resolution {
        case .inside: return
        case .outside:
            throw ArchiveError.unsafe(
                member, "it is a symlink to '\(ArchiveError.cut(target))', which leads outside the buildpack")
        case .loop:
            throw ArchiveError.unsafe(
                member,
                "it is a symlink to '\(ArchiveError.cut(target))', which is a symlink loop (more than \(PathTree.maxHops) links followed)"
            )
        }
    }

    /// The tree node of the directory at `components`, added where missing; refuses a path that
    /// goes through a symlink or a file.
    private mutating func directoryNode(_ components: ArraySlice<String>, member: String) throws -> Int {
        var node = PathTree.root
        for (depth, name) in zip(components.indices, components) {
            if let next = tree.child(of: node, named: name) {
                switch tree.kinds[next] {
                case .directory:
                    node = next
                case .symlink:
                    let path = components[...depth].joined(separator: "/")
                    throw ArchiveError.unsafe(
                        member, "'\(ArchiveError.cut(path))' is a symlink, and nothing is written through a symlink")
                case .file:
                    let path = components[...depth].joined(separator: "/")
                    throw ArchiveError.unsafe(member, "'\(ArchiveError.cut(path))' is already a file, not a directory")
                }
            } else {
                node = tree.set(name, in: node, to: .directory)
            }
        }
        return node
    }

    /// An open descriptor for the directory `node`, opening (and creating, 0755) each level from
    /// the nearest open ancestor down, one component at a time, never through a symlink.
    private mutating func descriptor(_ node: Int, member: String) throws -> ArchiveDirectory {
        if let cached = directories[node] { return cached }
        let (top, below) = tree.way(to: node) { directories[$0] != nil }
        var dir = directories[top] ?? root
        for next in below {
            let name = tree.name(of: next)
            dir = try Self.system(member) { try openDirectory(name, in: dir, node: next, member: member) }
        }
        return dir
    }

    private mutating func makeDirectory(
        _ name: String, in parent: ArchiveDirectory, parentNode: Int, member: String
    ) throws -> ArchiveDirectory {
        let node = tree.set(name, in: parentNode, to: .directory)
        return try openDirectory(name, in: parent, node: node, member: member)
    }

    private mutating func openDirectory(
        _ name: String, in parent: ArchiveDirectory, node: Int, member: String
    ) throws -> ArchiveDirectory {
        switch try parent.kind(of: name) {
        case nil:
            try parent.makeDirectory(name)
        case .directory:
            break
        case .symlink:
            throw ArchiveError.unsafe(member, "'\(name)' is a symlink, and nothing is written through a symlink")
        default:
            throw ArchiveError.unsafe(member, "'\(name)' is already a file, not a directory")
        }
        let dir = try parent.openSubdirectory(name)
        try dir.handle.setMode(0o755)
        if directories.count >= 256 { directories.removeAll(keepingCapacity: true) }
        directories[node] = dir
        return dir
    }

    /// Refuses a member that lands where an earlier member of another type is (SPEC §6); a later
    /// file may replace a file, a symlink a symlink, as tar does.
    private func collide(_ existing: Int?, with kind: PathTree.Kind, member: String) throws {
        guard let existing else { return }
        let old = tree.kinds[existing]
        switch (old, kind) {
        case (.file, .file), (.symlink, .symlink), (.directory, .directory): return
        default:
            throw ArchiveError.unsafe(
                member, "an earlier member put \(old.noun) at this path, and this member is \(kind.noun)")
        }
    }

    /// The file node at `components`, reached without following any symlink; nil otherwise.
    private func file(at components: [String]) -> Int? {
        var node = PathTree.root
        for name in components {
            guard let next = tree.child(of: node, named: name) else { return nil }
            node = next
            if tree.kinds[node] == .file { continue }
            if tree.kinds[node] != .directory { return nil }
        }
        return tree.kinds[node] == .file ? node : nil
    }

    /// Removes what an earlier member of the same type left at `name`.
    private func clear(_ name: String, in parent: ArchiveDirectory, member: String) throws {
        switch try parent.kind(of: name) {
        case nil: return
        case .directory: throw ArchiveError.unsafe(member, "'\(name)' is already a directory")
        default: try parent.remove(name)
        }
    }

    /// The node's path, for messages (cut to a readable length).
    private func path(of node: Int) -> String {
        var names: [String] = []
        var at = node
        while at != PathTree.root {
            names.append(tree.name(of: at))
            at = tree.parents[at]
        }
        return ArchiveError.cut(names.reversed().joined(separator: "/"))
    }

    /// Runs file system calls, turning an OS failure into a sentence naming the member.
    private static func system<T>(_ member: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as ArchiveIOError {
            if error.isSymlinkLoop || error.isNotDirectory {
                throw ArchiveError.unsafe(member, "a part of its path is a symlink or a file (\(error.text))")
            }
            throw ArchiveError(
                .system, member: member, "Could not extract archive member '\(member)': \(error.text).")
        }
    }

    private static func describe(_ flag: UInt8) -> String {
        switch flag {
        case UInt8(ascii: "3"): return "a character device"
        case UInt8(ascii: "4"): return "a block device"
        case UInt8(ascii: "6"): return "a fifo"
        case UInt8(ascii: "S"): return "a sparse file"
        default:
            let shown = (0x21...0x7e).contains(flag) ? String(UnicodeScalar(flag)) : "\\(\(flag))"
            return "of unknown type '\(shown)'"
        }
    }
}
