import CMultipackSpawn
import FoundationEssentials
import Glibc
import Synchronization

/// Small file-system helpers over FileManager and POSIX calls.
enum Files {
    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// True for anything at `path`, a dangling symlink included.
    static func lexists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    static func isExecutable(_ path: String) -> Bool { access(path, X_OK) == 0 }

    static func read(_ path: String, followingLinks: Bool = true) throws -> String {
        String(decoding: try readRegularFile(path, followingLinks: followingLinks), as: UTF8.self)
    }

    /// The text of the regular file at `relative` under `root`, no link followed on the way: for
    /// what multipack reads, as root, of what a build wrote (a link there may name any file on
    /// this machine).
    static func read(_ relative: String, beneath root: String, limit: Int = .max) throws -> String {
        var directory = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directory >= 0 else { throw FileError(path: root, action: "read", errno: errno) }
        defer { close(directory) }
        let parts = relative.split(separator: "/").map(String.init)
        for part in parts.dropLast() {
            let next = openat(directory, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard next >= 0 else { throw FileError(path: root + "/" + relative, action: "read", errno: errno) }
            close(directory)
            directory = next
        }
        let descriptor = openat(directory, parts.last ?? ".", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else { throw FileError(path: root + "/" + relative, action: "read", errno: errno) }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            throw FileError(path: root + "/" + relative, action: "read", errno: EINVAL, detail: kindName(info.st_mode))
        }
        guard info.st_size <= limit else { throw tooLarge(root + "/" + relative, limit: limit) }
        return String(
            decoding: try readToEnd(descriptor, path: root + "/" + relative, chunk: 65_536, limit: limit), as: UTF8.self
        )
    }

    /// A file the user named on the command line (`--env-file`): a regular file, or a pipe
    /// (`--env-file <(…)`, `/dev/stdin` fed by a pipe) read to its end. Either is refused past
    /// `limit` bytes (EFBIG) having read at most one chunk more. A named FIFO (which may never get
    /// a writer), a device (`/dev/zero`), a directory or a socket is refused at once (EINVAL with
    /// a `detail`), never opened in a way that blocks. A signal stops the read of a pipe.
    static func readNamedFile(_ path: String, limit: Int) throws -> [UInt8] {
        var info = stat()
        guard stat(path, &info) == 0 else { throw FileError(path: path, action: "read", errno: errno) }
        guard info.st_mode & S_IFMT == S_IFIFO else { return try readRegularFile(path, limit: limit) }
        let descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else { throw FileError(path: path, action: "read", errno: errno) }
        defer { close(descriptor) }
        // An anonymous pipe has its writer (the shell started it); a named FIFO may have none.
        guard multipack_is_anonymous_pipe(descriptor) == 1 else {
            throw FileError(
                path: path, action: "read", errno: EINVAL,
                detail: "a FIFO (named pipe), not a file (give a file, or `<(cat FIFO)` when something writes to it)")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            try StopToken.signals.check()
            var ready = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            if poll(&ready, 1, 100) == 0 { continue }
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            guard count >= 0 else { throw FileError(path: path, action: "read", errno: errno) }
            if count == 0 { return bytes }
            bytes += chunk[..<count]
            if bytes.count > limit { throw tooLarge(path, limit: limit) }
        }
    }

    /// What is left to read from `descriptor`, `chunk` bytes at a time; errors name `path`. More
    /// than `limit` bytes is refused with EFBIG, having read one chunk past it at most.
    private static func readToEnd(_ descriptor: Int32, path: String, chunk size: Int, limit: Int = .max) throws
        -> [UInt8]
    {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: size)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR {
                // A pipe that never ends must not hold a build that was asked to stop.
                try StopToken.signals.check()
                continue
            }
            guard count >= 0 else { throw FileError(path: path, action: "read", errno: errno) }
            if count == 0 { return bytes }
            bytes += chunk[..<count]
            if bytes.count > limit { throw tooLarge(path, limit: limit) }
        }
    }

    static func tooLarge(_ path: String, limit: Int) -> FileError {
        FileError(
            path: path, action: "read", errno: EFBIG, detail: "it is larger than \(TreeSize.format(Int64(limit)))")
    }

    /// The bytes of a regular file. Anything else (a directory, a FIFO, a socket, a device) is
    /// refused with EINVAL and a `detail` saying what it is, and is never opened in a way that
    /// can block: stat first, then open with O_NONBLOCK and check again on the descriptor. A file
    /// over `limit` bytes is refused with EFBIG before it is read; without `followingLinks`, a
    /// symlink is refused with ELOOP.
    static func readRegularFile(_ path: String, limit: Int = .max, followingLinks: Bool = true) throws -> [UInt8] {
        var info = stat()
        guard (followingLinks ? stat(path, &info) : lstat(path, &info)) == 0 else {
            throw FileError(path: path, action: "read", errno: errno)
        }
        func refuse(_ mode: mode_t) -> FileError {
            if mode & S_IFMT == S_IFLNK {
                return FileError(path: path, action: "read", errno: ELOOP, detail: "a symlink, not a file")
            }
            return FileError(path: path, action: "read", errno: EINVAL, detail: kindName(mode))
        }
        guard info.st_mode & S_IFMT == S_IFREG else { throw refuse(info.st_mode) }
        guard info.st_size <= limit else { throw tooLarge(path, limit: limit) }
        let descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | (followingLinks ? 0 : O_NOFOLLOW))
        guard descriptor >= 0 else {
            throw errno == ELOOP ? refuse(S_IFLNK) : FileError(path: path, action: "read", errno: errno)
        }
        defer { close(descriptor) }
        guard fstat(descriptor, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { throw refuse(info.st_mode) }
        guard info.st_size <= limit else { throw tooLarge(path, limit: limit) }
        // Small files (records, exports, refs) in one read of their size; /proc's files say 0.
        return try readToEnd(
            descriptor, path: path, chunk: Int(min(max(info.st_size + 1, 4096), 65_536)), limit: limit)
    }

    /// A file of the app (`.slugfilter`, `.buildpacks.lock`), read as `readRegularFile` reads one.
    /// A symlink is followed only when it stays in the app (`root`): one that leads out of it is
    /// refused (EXDEV, with a `detail`), so that no file of the machine is read, or echoed in an
    /// error, through it; one that leads nowhere is refused too (ENOENT, with a `detail`).
    static func readInApp(_ path: String, root: String, limit: Int) throws -> [UInt8] {
        var info = stat()
        if lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFLNK {
            guard let target = realpath(path, nil) else {
                throw FileError(path: path, action: "read", errno: ENOENT, detail: "a symlink to nothing")
            }
            defer { free(target) }
            guard let base = realpath(root, nil) else { throw FileError(path: root, action: "read", errno: errno) }
            defer { free(base) }
            let resolved = String(cString: target)
            let app = String(cString: base)
            guard resolved.hasPrefix(app == "/" ? "/" : app + "/") else {
                throw FileError(path: path, action: "read", errno: EXDEV, detail: "a symlink out of the app")
            }
        }
        return try readRegularFile(path, limit: limit)
    }

    /// "a directory", "a FIFO", … for a file that is not a regular one.
    static func kindName(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: return "a directory, not a file"
        case S_IFIFO: return "a FIFO (named pipe), not a file"
        case S_IFSOCK: return "a unix socket, not a file"
        case S_IFCHR, S_IFBLK: return "a device, not a file"
        default: return "not a regular file"
        }
    }

    /// A NUL-terminated name from a C buffer (a directory entry, a filled-in template), as text.
    static func string(_ cString: [CChar]) -> String {
        String(decoding: cString.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Writes a file whole or not at all, so a reader never sees half of it (see `replaceWhole`).
    static func write(
        _ text: String, to path: String, mode: Int = 0o644, replacedGoesTo trash: SerialWork? = nil
    ) throws {
        try replaceWhole(path, mode: mode_t(mode), replacedGoesTo: trash) { temporary in
            let descriptor = open(temporary, O_WRONLY | O_TRUNC | O_CLOEXEC)
            guard descriptor >= 0 else { throw FileError(path: path, action: "write", errno: errno) }
            defer { close(descriptor) }
            guard writeAll(Array(text.utf8), to: descriptor) else {
                throw FileError(path: path, action: "write", errno: errno)
            }
        }
    }

    /// Writes bytes whole or not at all (see `replaceWhole`).
    static func writeBytes(_ bytes: [UInt8], to path: String, mode: Int = 0o644) throws {
        try replaceWhole(path, mode: mode_t(mode)) { temporary in
            let descriptor = open(temporary, O_WRONLY | O_TRUNC | O_CLOEXEC)
            guard descriptor >= 0 else { throw FileError(path: path, action: "write", errno: errno) }
            defer { close(descriptor) }
            guard writeAll(bytes, to: descriptor) else { throw FileError(path: path, action: "write", errno: errno) }
        }
    }

    /// The directories `replaceWhole` has swept in this process.
    private static let sweptParents = Mutex<Set<String>>([])

    /// Makes `path` by writing `<name>.partial-<pid>-XXXXXX` beside it (`body` gets that name;
    /// the file is there, empty, with `mode`, locked while it is written) and renaming it into
    /// place. What killed writers left in that directory, their locks free, goes first (SPEC §5).
    /// With `trash`, the file replaced is swapped out to the partial's name and removed there by
    /// `trash`, off the caller's path: freeing a file's blocks can wait for the disk (a file system
    /// mounted with `discard` trims them at once).
    static func replaceWhole(
        _ path: String, mode: mode_t = 0o644, replacedGoesTo trash: SerialWork? = nil, _ body: (String) throws -> Void
    ) throws {
        let slash = path.lastIndex(of: "/")
        let parent = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let prefix = String(slash.map { path[path.index(after: $0)...] } ?? path[...]) + ".partial-"
        // Once per directory and process: a build writes many files in some (one per config var).
        if sweptParents.withLock({ $0.insert(parent).inserted }) {
            ScratchDirectory.sweep(prefixes: [".partial-"], in: parent, containing: true)
        }
        let partial = try ScratchDirectory(prefix: prefix, in: parent, file: true)
        var swapped = false
        defer { swapped ? partial.unlock() : partial.remove() }
        guard chmod(partial.path, mode) == 0 else { throw FileError(path: path, action: "write", errno: errno) }
        try body(partial.path)
        // Only a regular file is swapped out: a directory or a symlink in its place is refused
        // or replaced by `rename` as before, never carried off under a name the sweep skips.
        if let trash, isRegularFile(path, followingLinks: false),
            multipack_rename(partial.path, path, UInt32(MULTIPACK_RENAME_EXCHANGE)) == 0
        {
            swapped = true
            let replaced = partial.path
            trash.add { Files.remove(replaced) }
            return
        }
        guard rename(partial.path, path) == 0 else { throw FileError(path: path, action: "write", errno: errno) }
    }

    /// Writes every byte, going on after short writes and EINTR. False (errno set) on failure.
    static func writeAll(_ bytes: [UInt8], to descriptor: Int32) -> Bool {
        bytes.withUnsafeBytes { writeAll($0, to: descriptor) }
    }

    static func writeAll(_ bytes: UnsafeRawBufferPointer, to descriptor: Int32) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = Glibc.write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return false }
            offset += written
        }
        return true
    }

    /// $TMPDIR, or /tmp.
    static var temporaryRoot: String {
        ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
    }

    static func makeDirectory(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw FileError(path: path, action: "create the directory", errno: errno)
        }
    }

    static func remove(_ path: String) {
        do {
            try FileManager.default.removeItem(atPath: path)
        } catch {
            removeByDescriptor(path)
        }
    }

    /// Removes a tree one directory descriptor at a time: FileManager gives up on paths longer
    /// than PATH_MAX, which an archive's members (up to 4096 bytes each, SPEC §6) reach below
    /// the directory they are extracted into.
    @discardableResult
    static func removeByDescriptor(_ path: String) -> Bool {
        guard let slash = path.lastIndex(of: "/") else { return false }
        let parent = slash == path.startIndex ? "/" : String(path[..<slash])
        let name = String(path[path.index(after: slash)...])
        guard !name.isEmpty, let directory = try? ArchiveDirectory.open(parent) else { return false }
        return (try? directory.removeTree(name)) != nil
    }

    static func move(_ from: String, to: String) throws {
        guard rename(from, to) == 0 else { throw FileError(path: from, action: "move", errno: errno) }
    }

    /// Copies a tree (sockets and FIFOs left out, never opened); the skipped paths come back.
    @discardableResult
    static func copyTree(_ from: String, to: String) throws -> [String] {
        var copier = TreeCopy()
        try copier.copy(from, to: to)
        return copier.skipped
    }

    /// Copies one regular file's contents, giving the copy `mode` (written whole, then renamed).
    static func copyFile(_ from: String, to: String, mode: mode_t) throws {
        try replaceWhole(to, mode: mode) { temporary in
            let input = open(from, O_RDONLY | O_CLOEXEC)
            guard input >= 0 else { throw FileError(path: from, action: "copy", errno: errno) }
            defer { close(input) }
            let output = open(temporary, O_WRONLY | O_TRUNC | O_CLOEXEC)
            guard output >= 0 else { throw FileError(path: to, action: "write", errno: errno) }
            defer { close(output) }
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            try copyBytes(input, from: from, to: output, named: to, through: &buffer)
        }
    }

    /// Copies what is left to read from `input` to `output` (their paths name the side that
    /// failed), through `buffer`.
    static func copyBytes(
        _ input: Int32, from source: String, to output: Int32, named target: String, through buffer: inout [UInt8]
    ) throws {
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(input, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw FileError(path: source, action: "copy", errno: errno) }
            if count == 0 { return }
            let written = buffer.withUnsafeBytes {
                writeAll(UnsafeRawBufferPointer(rebasing: $0[..<count]), to: output)
            }
            guard written else { throw FileError(path: target, action: "write", errno: errno) }
        }
    }

    /// A file's size in bytes (0 if it cannot be read).
    static func size(_ path: String) -> Int64 {
        var info = stat()
        return stat(path, &info) == 0 ? Int64(info.st_size) : 0
    }

    static func list(_ path: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
    }

    /// An absolute, normalised path (relative ones against the working directory).
    static func absolute(_ path: String) -> String {
        var full = path
        if !path.hasPrefix("/") {
            full = FileManager.default.currentDirectoryPath + "/" + path
        }
        var parts: [Substring] = []
        for part in full.split(separator: "/") {
            if part == "." { continue }
            if part == ".." {
                _ = parts.popLast()
                continue
            }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }

    /// The directory an absolute path is in (`/` for `/x`).
    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }

    static func join(_ base: String, _ path: String) -> String {
        path.hasPrefix("/") ? absolute(path) : absolute(base + "/" + path)
    }

    /// Sets the executable bits (for whoever may read) on every file in `directory`.
    static func makeExecutable(inDirectory directory: String) {
        for name in list(directory) {
            let path = directory + "/" + name
            var info = stat()
            guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { continue }
            let executeBits = (info.st_mode & 0o444) >> 2
            // Most already are; a chmod that changes nothing still costs the file system a write.
            if info.st_mode & executeBits != executeBits { chmod(path, (info.st_mode & 0o7777) | executeBits) }
        }
    }
}

public struct FileError: Error, CustomStringConvertible {
    public var path: String
    public var action: String
    public var errno: Int32
    /// What the failing call said, when it was not an errno.
    public var detail: String?

    public init(path: String, action: String, errno: Int32, detail: String? = nil) {
        self.path = path
        self.action = action
        self.errno = errno
        self.detail = detail
    }

    public var description: String { "could not \(action) \(path): \(detail ?? String(cString: strerror(errno)))" }
}

extension Files {
    /// Removes a file or a whole tree, saying why it could not.
    static func removeTree(_ path: String) throws {
        do {
            try FileManager.default.removeItem(atPath: path)
        } catch {
            if removeByDescriptor(path) { return }
            throw MultipackError.build(
                "Could not remove \(path): \(MultipackError.reason(error))",
                hint: "Check its permissions, or remove it by hand (rm -rf \(path)).")
        }
    }

    /// The size of a file in bytes, or nil when there is none.
    static func size(_ path: String) -> Int64? {
        var info = stat()
        return stat(path, &info) == 0 ? Int64(info.st_size) : nil
    }

    static func isRegularFile(_ path: String, followingLinks: Bool = true) -> Bool {
        var info = stat()
        return (followingLinks ? stat(path, &info) : lstat(path, &info)) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }
}
