import Glibc

// The only file in Archive/ that calls the C library for files. Everything the extractor does
// goes through a directory descriptor with O_NOFOLLOW, so no path the archive controls is ever
// resolved through a symlink.

/// A failed system call: the errno and the C library's text for it.
struct ArchiveIOError: Error {
    let code: Int32
    var text: String { String(cString: strerror(code)) }
    var isNotFound: Bool { code == ENOENT }
    var isSymlinkLoop: Bool { code == ELOOP }
    var isNotDirectory: Bool { code == ENOTDIR }
    var exists: Bool { code == EEXIST }

    static var current: ArchiveIOError { ArchiveIOError(code: errno) }

    /// The text for any error thrown by this file's calls.
    static func text(_ error: any Error) -> String {
        (error as? ArchiveIOError)?.text ?? "\(error)"
    }
}

enum ArchiveFileKind: Equatable {
    case regular, directory, symlink, other
}

struct ArchiveFileInfo {
    var kind: ArchiveFileKind
    var mode: UInt32
    var size: Int64
    var mtime: Int64
    var uid: UInt32
    var gid: UInt32
}

/// Retries a call interrupted by a signal; any other failure becomes a `ArchiveIOError`.
private func check<T: BinaryInteger>(_ call: () -> T) throws -> T {
    while true {
        let result = call()
        if result >= 0 { return result }
        if errno != EINTR { throw ArchiveIOError.current }
    }
}

/// An open file descriptor, closed when the last reference goes.
final class ArchiveFile {
    let raw: Int32

    private init(raw: Int32) { self.raw = raw }

    deinit { close(raw) }

    static func openForReading(_ path: String) throws -> ArchiveFile {
        ArchiveFile(raw: try check { open(path, O_RDONLY | O_CLOEXEC) })
    }

    /// Creates or truncates a file for writing (the archive the writer produces).
    static func create(_ path: String, mode: UInt32 = 0o644) throws -> ArchiveFile {
        ArchiveFile(raw: try check { open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode_t(mode)) })
    }

    /// The first bytes of the file, without moving the read position.
    func prefix(_ count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let n = try bytes.withUnsafeMutableBytes { buffer in
            try check { pread(raw, buffer.baseAddress, count, 0) }
        }
        return Array(bytes[..<n])
    }

    func read(into buffer: inout [UInt8], at offset: Int, max: Int) throws -> Int {
        try buffer.withUnsafeMutableBytes { bytes in
            try check { Glibc.read(raw, bytes.baseAddress! + offset, max) }
        }
    }

    func write(_ buffer: [UInt8], _ range: Range<Int>) throws {
        try buffer.withUnsafeBytes { bytes in
            var start = range.lowerBound
            while start < range.upperBound {
                start += try check { Glibc.write(raw, bytes.baseAddress! + start, range.upperBound - start) }
            }
        }
    }

    /// Sets the permission bits exactly (the umask does not apply to fchmod).
    func setMode(_ mode: UInt32) throws {
        _ = try check { fchmod(raw, mode_t(mode)) }
    }

    func info() throws -> ArchiveFileInfo {
        var st = stat()
        _ = try check { fstat(raw, &st) }
        return ArchiveFileInfo(st)
    }
}

/// Reads a whole file descriptor as a `ByteSource`.
struct FileSource: ByteSource {
    let handle: ArchiveFile

    mutating func read(into buffer: inout [UInt8], at offset: Int, max: Int) throws -> Int {
        try handle.read(into: &buffer, at: offset, max: max)
    }
}

/// A directory opened by descriptor; names passed to it are single path components.
final class ArchiveDirectory {
    let handle: ArchiveFile
    var raw: Int32 { handle.raw }

    init(_ handle: ArchiveFile) { self.handle = handle }

    /// Opens a directory the caller chose (symlinks in this path are the caller's business).
    static func open(_ path: String) throws -> ArchiveDirectory {
        let fd = try check { Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        return ArchiveDirectory(ArchiveFile(rawOwning: fd))
    }

    /// Opens the child directory `name`, never through a symlink (ELOOP/ENOTDIR then).
    func openSubdirectory(_ name: String) throws -> ArchiveDirectory {
        let fd = try check { openat(raw, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0) }
        return ArchiveDirectory(ArchiveFile(rawOwning: fd))
    }

    func makeDirectory(_ name: String) throws {
        _ = try check { mkdirat(raw, name, 0o700) }
    }

    /// Creates a new file; fails if anything, a symlink included, already has that name.
    func createFile(_ name: String) throws -> ArchiveFile {
        let fd = try check { openat(raw, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600) }
        return ArchiveFile(rawOwning: fd)
    }

    /// What `name` is, without following it; nil when it does not exist.
    func kind(of name: String) throws -> ArchiveFileKind? {
        var st = stat()
        do {
            _ = try check { fstatat(raw, name, &st, AT_SYMLINK_NOFOLLOW) }
        } catch let error as ArchiveIOError where error.isNotFound {
            return nil
        }
        return ArchiveFileInfo(st).kind
    }

    /// Removes a non-directory entry.
    func remove(_ name: String) throws {
        _ = try check { unlinkat(raw, name, 0) }
    }

    func makeSymlink(_ name: String, target: String) throws {
        _ = try check { symlinkat(target, raw, name) }
    }

    /// Hard-links `path` (relative to `root`, free of symlinks) as `name` here.
    func makeHardLink(_ name: String, to path: String, in root: ArchiveDirectory) throws {
        _ = try check { linkat(root.raw, path, raw, name, 0) }
    }
}

extension ArchiveFile {
    fileprivate convenience init(rawOwning fd: Int32) { self.init(raw: fd) }
}

extension ArchiveFileInfo {
    fileprivate init(_ st: stat) {
        let type = st.st_mode & S_IFMT
        kind =
            type == S_IFREG ? .regular : type == S_IFDIR ? .directory : type == S_IFLNK ? .symlink : .other
        mode = UInt32(st.st_mode & 0o7777)
        size = Int64(st.st_size)
        mtime = Int64(st.st_mtim.tv_sec)
        uid = st.st_uid
        gid = st.st_gid
    }
}

/// Path-based calls for the writer, which reads a tree the caller owns.
enum ArchiveTree {
    static func info(_ path: String) throws -> ArchiveFileInfo {
        var st = stat()
        _ = try check { lstat(path, &st) }
        return ArchiveFileInfo(st)
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR
    }

    static func readLink(_ path: String) throws -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = try check { readlink(path, &buffer, buffer.count - 1) }
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The names in a directory, without `.` and `..`, in the order the file system gives them.
    static func contents(of path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw ArchiveIOError.current }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}

// What the stack's layers need beyond a buildpack's: replacing and removing what a lower layer
// left, and keeping a file's time.
extension ArchiveDirectory {
    /// The names in this directory (without `.` and `..`), and whether each is a directory
    /// when the file system says so without a stat.
    func entries() throws -> [(name: String, isDirectory: Bool?)] {
        let copy = try check { dup(raw) }
        guard let stream = fdopendir(copy) else {
            let error = ArchiveIOError.current
            close(copy)
            throw error
        }
        defer { closedir(stream) }
        rewinddir(stream)
        var result: [(name: String, isDirectory: Bool?)] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard name != "." && name != ".." else { continue }
            let type = entry.pointee.d_type
            result.append((name, type == UInt8(DT_UNKNOWN) ? nil : type == UInt8(DT_DIR)))
        }
        return result
    }

    /// Removes `name` whatever it is, a whole directory tree included, never following a symlink.
    /// The tree is one multipack made, so its depth is bounded by the member paths' (SPEC §6).
    func removeTree(_ name: String) throws {
        guard let kind = try kind(of: name) else { return }
        guard kind == .directory else { return try remove(name) }
        let directory = try openSubdirectory(name)
        for entry in try directory.entries() {
            if entry.isDirectory == false {
                try directory.remove(entry.name)
            } else {
                try directory.removeTree(entry.name)
            }
        }
        _ = try check { unlinkat(raw, name, AT_REMOVEDIR) }
    }
}

extension ArchiveFile {
    /// Sets the modification (and access) time, in seconds since 1970.
    func setModificationTime(_ seconds: Int64) throws {
        var times = [timespec(tv_sec: Int(seconds), tv_nsec: 0), timespec(tv_sec: Int(seconds), tv_nsec: 0)]
        _ = try check { futimens(raw, &times) }
    }
}
