import Glibc

/// Copies a tree with plain system calls: regular files (mode and mtime kept), directories and
/// symlinks (copied as links, never followed). Sockets, FIFOs and devices are skipped, never
/// opened: opening a FIFO blocks until a writer comes (SPEC §12's local builds copy apps that
/// may hold one). Every failure is a `FileError` naming the path and the errno's own words.
struct TreeCopy {
    /// Paths (relative to the source) skipped because they are not files, directories or links.
    private(set) var skipped: [String] = []
    /// One buffer for every file of the tree.
    private var buffer = [UInt8](repeating: 0, count: 1 << 16)

    mutating func copy(_ from: String, to: String) throws {
        var pending: [(relative: String, isRoot: Bool)] = [("", true)]
        // Directory modes are set after their contents are written (a 0555 directory is copied).
        var directoryModes: [(String, mode_t)] = []
        while let (relative, isRoot) = pending.popLast() {
            try StopToken.signals.check()
            let source = isRoot ? from : from + "/" + relative
            let target = isRoot ? to : to + "/" + relative
            var info = stat()
            guard lstat(source, &info) == 0 else { throw FileError(path: source, action: "copy", errno: errno) }
            switch info.st_mode & S_IFMT {
            case S_IFDIR:
                guard mkdir(target, 0o700) == 0 || (isRoot && errno == EEXIST && Files.isDirectory(target)) else {
                    throw FileError(path: target, action: "create the directory", errno: errno)
                }
                directoryModes.append((target, info.st_mode & 0o7777))
                let names: [String]
                do {
                    names = try ArchiveTree.contents(of: source)
                } catch let error as ArchiveIOError {
                    throw FileError(path: source, action: "read", errno: error.code)
                }
                for name in names {
                    pending.append((relative.isEmpty ? name : relative + "/" + name, false))
                }
            case S_IFREG:
                try copyFile(source, to: target, info: info)
            case S_IFLNK:
                var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
                let count = readlink(source, &buffer, buffer.count - 1)
                guard count >= 0 else { throw FileError(path: source, action: "read the link", errno: errno) }
                buffer[count] = 0
                guard symlink(buffer, target) == 0 else { throw FileError(path: target, action: "copy", errno: errno) }
            default:
                skipped.append(relative.isEmpty ? source : relative)
            }
        }
        for (path, mode) in directoryModes.reversed() { chmod(path, mode) }
    }

    private mutating func copyFile(_ source: String, to target: String, info: stat) throws {
        // O_NONBLOCK: if the path became a FIFO since lstat, the open still returns at once.
        let input = open(source, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard input >= 0 else { throw FileError(path: source, action: "copy", errno: errno) }
        defer { close(input) }
        let output = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, info.st_mode & 0o777)
        guard output >= 0 else { throw FileError(path: target, action: "copy", errno: errno) }
        defer { close(output) }
        try Files.copyBytes(input, from: source, to: output, named: target, through: &buffer)
        fchmod(output, info.st_mode & 0o7777)
        var times = [info.st_atim, info.st_mtim]
        futimens(output, &times)
    }
}
