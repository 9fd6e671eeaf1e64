import Glibc

/// The weight of a tree, or of a change to it: bytes (the sizes of its files and symlinks, a
/// hard link counted at each name) and files (everything but directories).
public struct TreeSize: Codable, Sendable, Equatable {
    public var bytes: Int64 = 0
    public var files = 0

    public init(bytes: Int64 = 0, files: Int = 0) {
        self.bytes = bytes
        self.files = files
    }

    static func - (after: TreeSize, before: TreeSize) -> TreeSize {
        TreeSize(bytes: after.bytes - before.bytes, files: after.files - before.files)
    }

    static func += (total: inout TreeSize, more: TreeSize) {
        total.bytes += more.bytes
        total.files += more.files
    }

    /// `84.1 MB`, counted in powers of 1024 as Heroku counts the slug.
    static func format(_ bytes: Int64) -> String {
        let magnitude = bytes.magnitude
        guard magnitude >= 1024 else { return "\(magnitude) B" }
        let (tenths, unit) = Slug.scaled(magnitude)
        return "\(tenths / 10).\(tenths % 10) \(["KB", "MB", "GB", "TB"][unit])"
    }

    /// A growth as the summary shows it: `+84.1 MB`, `-2.0 KB`.
    var signedBytes: String { (bytes < 0 ? "-" : "+") + Self.format(bytes) }

    var signedFiles: String { (files < 0 ? "" : "+") + "\(files) file\(files.magnitude == 1 ? "" : "s")" }

    var description: String { "\(Self.format(bytes)), \(files) file\(files == 1 ? "" : "s")" }
}

/// Walks a tree by descriptor (`openat`, `fstatat`, never following a symlink), so each entry
/// costs one call and no path is rebuilt from the root.
enum TreeWalk {
    struct Entry {
        var name: [CChar]
        var type: UInt8
    }

    /// The size of everything under `root`; what cannot be read counts as nothing.
    static func measure(_ root: String) -> TreeSize {
        var size = TreeSize()
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return size }
        measure(directory: fd, into: &size)
        close(fd)
        return size
    }

    private static func measure(directory fd: Int32, into size: inout TreeSize) {
        for entry in entries(fd) {
            var type = entry.type
            var info = stat()
            if type != DT_DIR {
                guard fstatat(fd, entry.name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
                type = (info.st_mode & S_IFMT) == S_IFDIR ? UInt8(DT_DIR) : UInt8(DT_REG)
            }
            if type == DT_DIR {
                let child = openat(fd, entry.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard child >= 0 else { continue }
                measure(directory: child, into: &size)
                close(child)
            } else {
                size.files += 1
                let kind = info.st_mode & S_IFMT
                if kind == S_IFREG || kind == S_IFLNK { size.bytes += Int64(info.st_size) }
            }
        }
    }

    /// The entries of a directory (without `.` and `..`), read to the end before anything changes it.
    static func entries(_ fd: Int32) -> [Entry] {
        let copy = dup(fd)
        guard copy >= 0, let dir = fdopendir(copy) else {
            if copy >= 0 { close(copy) }
            return []
        }
        defer { closedir(dir) }
        // The directory was maybe read before through another descriptor sharing its offset.
        rewinddir(dir)
        let nameOffset = MemoryLayout<dirent>.offset(of: \dirent.d_name)!
        var result: [Entry] = []
        while let entry = readdir(dir) {
            let name = UnsafeRawPointer(entry).advanced(by: nameOffset).assumingMemoryBound(to: CChar.self)
            let length = strlen(name)
            if name[0] == 0x2E && (length == 1 || (length == 2 && name[1] == 0x2E)) { continue }
            result.append(
                Entry(name: Array(UnsafeBufferPointer(start: name, count: length + 1)), type: entry.pointee.d_type))
        }
        return result
    }
}

/// What `.slugfilter` took out of BUILD_DIR.
public struct SlugFilterOutcome: Sendable {
    /// Each removed path (relative to BUILD_DIR; a directory ends with `/`) and what went with it.
    public var removed: [(path: String, size: TreeSize)] = []
    public var total = TreeSize()
    /// Kept directories that could not be read, left as they were.
    public var unreadable: [String] = []
}

extension SlugFilter {
    /// Deletes from `root` what the rules exclude, deciding from the top down as rsync's sender
    /// does: an excluded directory is removed with everything in it, and its contents are not matched.
    public func apply(to root: String) throws -> SlugFilterOutcome {
        var outcome = SlugFilterOutcome()
        guard !isEmpty else { return outcome }
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw Removal.failure(root, errno) }
        defer { close(fd) }
        var path: [UInt8] = []
        try filter(directory: fd, path: &path, root: root, outcome: &outcome)
        return outcome
    }

    private func filter(directory fd: Int32, path: inout [UInt8], root: String, outcome: inout SlugFilterOutcome)
        throws
    {
        let base = path.count
        for entry in TreeWalk.entries(fd) {
            try StopToken.signals.check(SlugFilter.stage)
            path.removeSubrange(base...)
            if base > 0 { path.append(UInt8(ascii: "/")) }
            path += entry.name.dropLast().map { UInt8(bitPattern: $0) }
            var isDirectory = entry.type == DT_DIR
            if entry.type == DT_UNKNOWN {
                var info = stat()
                guard fstatat(fd, entry.name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
                isDirectory = (info.st_mode & S_IFMT) == S_IFDIR
            }
            if keeps(path, isDirectory: isDirectory) {
                guard isDirectory else { continue }
                // A kept directory that cannot be read is left whole: nothing in it is judged.
                let child = openat(fd, entry.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard child >= 0 else {
                    outcome.unreadable.append(String(decoding: path, as: UTF8.self) + "/")
                    continue
                }
                defer { close(child) }
                try filter(directory: child, path: &path, root: root, outcome: &outcome)
            } else {
                let shown = String(decoding: path, as: UTF8.self) + (isDirectory ? "/" : "")
                let size = try Removal.remove(fd, entry.name, isDirectory: isDirectory, path: root + "/" + shown)
                outcome.removed.append((shown, size))
                outcome.total += size
            }
        }
        path.removeSubrange(base...)
    }
}

/// Deleting by descriptor, making read-only directories writable on the way (a Go module cache
/// is all `0555`), and counting what went.
enum Removal {
    static func failure(_ path: String, _ error: Int32) -> MultipackError {
        MultipackError.build(
            "Could not remove \(path) as .slugfilter asks: \(String(cString: strerror(error)))",
            hint: "Check the permissions in the build directory, or keep that path with a `+` rule in .slugfilter.")
    }

    static func openDirectory(_ parent: Int32, _ name: [CChar], path: String) throws -> Int32 {
        var fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 && errno == EACCES {
            fchmodat(parent, name, 0o700, 0)
            fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        }
        guard fd >= 0 else { throw Removal.failure(path, errno) }
        return fd
    }

    static func remove(_ parent: Int32, _ name: [CChar], isDirectory: Bool, path: String) throws -> TreeSize {
        var size = TreeSize()
        if isDirectory {
            let fd = try openDirectory(parent, name, path: path)
            defer { close(fd) }
            for entry in TreeWalk.entries(fd) {
                try StopToken.signals.check(SlugFilter.stage)
                var info = stat()
                guard fstatat(fd, entry.name, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
                    throw Removal.failure(path + Files.string(entry.name), errno)
                }
                let childIsDirectory = (info.st_mode & S_IFMT) == S_IFDIR
                size += try remove(
                    fd, entry.name, isDirectory: childIsDirectory,
                    path: path + Files.string(entry.name) + (childIsDirectory ? "/" : ""))
            }
        } else {
            var info = stat()
            if fstatat(parent, name, &info, AT_SYMLINK_NOFOLLOW) == 0 {
                size.files = 1
                let kind = info.st_mode & S_IFMT
                if kind == S_IFREG || kind == S_IFLNK { size.bytes = Int64(info.st_size) }
            }
        }
        let flags = isDirectory ? AT_REMOVEDIR : 0
        if unlinkat(parent, name, flags) != 0 {
            guard errno == EACCES || errno == EPERM else { throw Removal.failure(path, errno) }
            var info = stat()
            fstat(parent, &info)
            fchmod(parent, (info.st_mode & 0o7777) | 0o700)
            guard unlinkat(parent, name, flags) == 0 else { throw Removal.failure(path, errno) }
        }
        return size
    }
}
