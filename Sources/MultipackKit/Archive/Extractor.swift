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
@discardableResult
public func extractArchive(
    atPath path: String, into destination: String, limits: ArchiveLimits = .default
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
    var extractor = Extractor(root: root, limits: limits)
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
    let root: ArchiveDirectory
    let limits: ArchiveLimits
    private(set) var summary = ExtractionSummary(entries: 0, bytes: 0)
    /// Regular files extracted so far, by normalised path: the only valid hard-link targets.
    private var files: Set<String> = []
    /// Symlinks extracted so far: normalised path → target as written.
    private var symlinks: [String: String] = [:]
    /// Open directories by normalised path. Directories are never removed or replaced, so a
    /// cached descriptor always names the directory it was opened as.
    private var directories: [String: ArchiveDirectory] = [:]

    init(root: ArchiveDirectory, limits: ArchiveLimits) {
        self.root = root
        self.limits = limits
    }

    func reader<S: ByteSource>(_ source: S) -> TarReader<S> {
        TarReader(source, maxHeaders: 2 * limits.maxEntries, maxMetadataBytes: limits.maxTotalBytes)
    }

    mutating func run<S: ByteSource>(_ reader: inout TarReader<S>) throws {
        while let entry = try reader.next() {
            try extract(entry, from: &reader)
        }
        try reader.finish(readingAtMost: maxTrailingBytes)
        // Later members can change where earlier symlinks lead; check them all on the final tree.
        for (path, target) in symlinks.sorted(by: { $0.key < $1.key }) {
            let parent = Array(path.split(separator: "/").dropLast().map(String.init))
            guard Self.resolve(target, from: parent, symlinks: symlinks) != nil else {
                throw ArchiveError.unsafe(path, "it is a symlink to '\(target)', which leads outside the buildpack")
            }
        }
    }

    private mutating func extract<S: ByteSource>(_ entry: TarEntry, from reader: inout TarReader<S>) throws {
        let member = entry.path
        summary.entries += 1
        guard summary.entries <= limits.maxEntries else {
            throw ArchiveError(
                .limitExceeded, member: member,
                "The archive has more than \(limits.maxEntries) members; refused at member '\(member)'.")
        }
        let components = try Self.components(of: member, member: member)
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
        let path = components.joined(separator: "/")
        let parent = try directory(components.dropLast(), member: member)
        try Self.system(member) {
            switch entry.kind {
            case .directory:
                try makeDirectory(name, path: path, in: parent, member: member)
            case .file:
                let total = summary.bytes + entry.size + reader.metadataBytes
                guard total <= limits.maxTotalBytes else {
                    throw ArchiveError(
                        .limitExceeded, member: member,
                        "The archive holds more than \(limits.maxTotalBytes) bytes; refused at member '\(member)'.")
                }
                try clear(name, path: path, in: parent, member: member)
                let file = try parent.createFile(name)
                try reader.readContent { buffer, range in try file.write(buffer, range) }
                try file.setMode(entry.mode & 0o111 != 0 ? 0o755 : 0o644)
                files.insert(path)
                summary.bytes += entry.size
            case .symlink:
                guard !entry.linkTarget.isEmpty, !entry.linkTarget.utf8.contains(0),
                    Self.resolve(entry.linkTarget, from: Array(components.dropLast()), symlinks: symlinks) != nil
                else {
                    throw ArchiveError.unsafe(
                        member, "it is a symlink to '\(entry.linkTarget)', which leads outside the buildpack")
                }
                try clear(name, path: path, in: parent, member: member)
                try parent.makeSymlink(name, target: entry.linkTarget)
                symlinks[path] = entry.linkTarget
            case .hardLink:
                let target = try Self.components(of: entry.linkTarget, member: member).joined(separator: "/")
                guard files.contains(target), target != path else {
                    throw ArchiveError.unsafe(
                        member,
                        "it is a hard link to '\(entry.linkTarget)', which is not a file extracted before it")
                }
                try clear(name, path: path, in: parent, member: member)
                try parent.makeHardLink(name, to: target, in: root)
                files.insert(path)
            case .other:
                break
            }
        }
    }

    /// Turns a member path into components, refusing the ones that could leave the root.
    static func components(of path: String, member: String) throws -> [String] {
        if path.hasPrefix("/") {
            throw ArchiveError.unsafe(member, "its path '\(path)' is absolute")
        }
        // A pax value can hold a NUL; the C calls would cut the name there, behind our checks.
        if path.utf8.contains(0) {
            throw ArchiveError.unsafe(member, "its path contains a NUL byte")
        }
        var result: [String] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) where part != "." {
            if part == ".." {
                throw ArchiveError.unsafe(member, "its path '\(path)' contains '..'")
            }
            result.append(String(part))
        }
        return result
    }

    /// Where `target` leads from the directory `base` (symlink-free components below the root),
    /// following the archive's own symlinks like the kernel would; nil if it leaves the root.
    static func resolve(_ target: String, from base: [String], symlinks: [String: String]) -> [String]? {
        var hops = 0
        return resolve(target, from: base, symlinks: symlinks, hops: &hops)
    }

    private static func resolve(
        _ target: String, from base: [String], symlinks: [String: String], hops: inout Int
    ) -> [String]? {
        if target.hasPrefix("/") { return nil }
        var stack = base
        for part in target.split(separator: "/") where part != "." {
            if part == ".." {
                if stack.isEmpty { return nil }
                stack.removeLast()
                continue
            }
            let candidate = (stack + [String(part)]).joined(separator: "/")
            if let next = symlinks[candidate] {
                hops += 1
                // The kernel gives up after 40 links too; a loop is refused rather than analysed.
                guard hops <= 40, let resolved = resolve(next, from: stack, symlinks: symlinks, hops: &hops)
                else { return nil }
                stack = resolved
            } else {
                stack.append(String(part))
            }
        }
        return stack
    }

    /// The directory at `components`, created (0755) where missing, opened without following
    /// symlinks at any level.
    private mutating func directory(_ components: ArraySlice<String>, member: String) throws -> ArchiveDirectory {
        guard let name = components.last else { return root }
        let path = components.joined(separator: "/")
        if let cached = directories[path] { return cached }
        let parent = try directory(components.dropLast(), member: member)
        let dir = try Self.system(member) { () throws -> ArchiveDirectory in
            try makeDirectory(name, path: path, in: parent, member: member)
            return directories[path]!
        }
        return dir
    }

    private mutating func makeDirectory(
        _ name: String, path: String, in parent: ArchiveDirectory, member: String
    ) throws {
        switch try parent.kind(of: name) {
        case nil:
            try parent.makeDirectory(name)
        case .directory:
            break
        case .symlink:
            throw ArchiveError.unsafe(member, "'\(path)' is a symlink, and nothing is written through a symlink")
        default:
            throw ArchiveError.unsafe(member, "'\(path)' is already a file, not a directory")
        }
        let dir = try parent.openSubdirectory(name)
        try dir.handle.setMode(0o755)
        if directories.count >= 256 { directories.removeAll(keepingCapacity: true) }
        directories[path] = dir
    }

    /// Makes room for a new non-directory member, as tar does when a later member replaces one.
    private mutating func clear(_ name: String, path: String, in parent: ArchiveDirectory, member: String) throws {
        switch try parent.kind(of: name) {
        case nil:
            return
        case .directory:
            throw ArchiveError.unsafe(member, "'\(path)' is already a directory")
        default:
            try parent.remove(name)
            files.remove(path)
            symlinks[path] = nil
        }
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
