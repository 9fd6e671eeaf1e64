import Glibc

/// Copies a cached checkout into a build's private directory while checking it against its
/// commit's objects, in one read of each file (SPEC §5): each directory must hold exactly its
/// tree's entries (a file added, a bin/test-compile, is a change too), each file must hash to its
/// blob (`blob <size>\0<content>`) with its tree's executable bit, each symlink's target to its
/// blob, and each submodule must be its own commit's tree. What is copied is what was hashed: a
/// file changed in between cannot slip through. Everything is opened relative to its directory
/// without following symlinks.
struct VerifiedCopy {
    /// Why the checkout is not its commit's: "bin/compile changed", "bin/test-compile was added".
    struct Changed: Error, CustomStringConvertible {
        var description: String
    }

    let objects: GitObjects
    private var buffer = [UInt8](repeating: 0, count: 1 << 16)
    static let maxFileBytes: off_t = 1 << 30

    init(objects: GitObjects) {
        self.objects = objects
    }

    /// Copies `source` (the checkout of `commit`) to `target`, which must not exist. Throws
    /// `Changed` for a checkout that is not the commit's, a `FileError` when `target` cannot be
    /// written; `target` is then incomplete and the caller removes it.
    static func copy(_ source: String, commit: String, objects: GitObjects, to target: String) throws {
        var copier = VerifiedCopy(objects: objects)
        guard let name = GitName.bytes(commit) else { throw Changed(description: "\(commit) is not a commit") }
        let from = open(source, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard from >= 0 else { throw Changed(description: "the checkout cannot be opened (\(errnoText()))") }
        defer { close(from) }
        guard mkdir(target, 0o700) == 0 else {
            throw FileError(path: target, action: "create the directory", errno: errno)
        }
        let to = open(target, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard to >= 0 else { throw FileError(path: target, action: "open", errno: errno) }
        defer { close(to) }
        try copier.copyCommit(name, from: from, to: to, path: "", target: target)
        // A directory's mode is set once its contents are written (a 0555 directory is copied).
        var info = stat()
        if fstat(from, &info) == 0 { fchmod(to, info.st_mode & 0o7777) }
    }

    private mutating func copyCommit(_ commit: [UInt8], from: Int32, to: Int32, path: String, target: String)
        throws
    {
        let which = path.isEmpty ? "the commit" : "submodule \(path)'s commit"
        guard let tree = objects.tree(ofCommit: commit) else {
            throw Changed(description: "the record of \(which)'s objects is missing or damaged")
        }
        try copyTree(tree, from: from, to: to, path: path, target: target)
    }

    private mutating func copyTree(_ tree: [UInt8], from: Int32, to: Int32, path: String, target: String) throws {
        try StopToken.signals.check()
        guard let entries = objects.entries(ofTree: tree) else {
            throw Changed(description: "the record of \(path.isEmpty ? "the root directory" : path)'s tree is missing")
        }
        func shown(_ name: [UInt8]) -> String {
            (path.isEmpty ? "" : path + "/") + String(decoding: name, as: UTF8.self)
        }
        let present = TreeWalk.entries(from).map { $0.name.dropLast().map { UInt8(bitPattern: $0) } }
        let expected = Set(entries.map(\.name))
        // The first added name in byte order, so that the message is the same every time.
        let added = present.filter { !expected.contains($0) }
        if let first = added.min(by: { $0.lexicographicallyPrecedes($1) }) {
            throw Changed(description: "\(shown(first)) was added")
        }
        for entry in entries {
            let name = entry.name.map { CChar(bitPattern: $0) } + [0]
            var info = stat()
            guard fstatat(from, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
                throw Changed(description: "\(shown(entry.name)) is missing")
            }
            let kind = info.st_mode & S_IFMT
            switch entry.mode {
            case .directory, .submodule:
                guard kind == S_IFDIR else {
                    throw Changed(description: "\(shown(entry.name)) is no longer a directory")
                }
                let child = openat(from, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard child >= 0 else {
                    throw Changed(description: "\(shown(entry.name)) cannot be read (\(errnoText()))")
                }
                defer { close(child) }
                guard mkdirat(to, name, 0o700) == 0 else {
                    throw FileError(
                        path: target + "/" + shown(entry.name), action: "create the directory", errno: errno)
                }
                let copy = openat(to, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard copy >= 0 else {
                    throw FileError(path: target + "/" + shown(entry.name), action: "open", errno: errno)
                }
                defer {
                    fchmod(copy, info.st_mode & 0o7777)
                    close(copy)
                }
                if entry.mode == .directory {
                    try copyTree(entry.object, from: child, to: copy, path: shown(entry.name), target: target)
                } else if objects.objects[entry.object] != nil {
                    try copyCommit(entry.object, from: child, to: copy, path: shown(entry.name), target: target)
                } else if !TreeWalk.entries(child).isEmpty {
                    // A submodule that was not checked out stays an empty directory.
                    throw Changed(
                        description: "\(shown(entry.name)) (a submodule that was not checked out) is not empty")
                }
            case .file, .executable:
                guard kind == S_IFREG else { throw Changed(description: "\(shown(entry.name)) is no longer a file") }
                guard (info.st_mode & S_IXUSR != 0) == (entry.mode == .executable) else {
                    throw Changed(
                        description:
                            "\(shown(entry.name)) \(entry.mode == .executable ? "lost" : "gained") its executable bit")
                }
                try copyFile(
                    name, entry: entry, info: info, from: from, to: to, shown: shown(entry.name), target: target)
            case .symlink:
                guard kind == S_IFLNK else { throw Changed(description: "\(shown(entry.name)) is no longer a symlink") }
                var link = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
                let count = readlinkat(from, name, &link, link.count - 1)
                guard count >= 0 else {
                    throw Changed(description: "\(shown(entry.name)) cannot be read (\(errnoText()))")
                }
                let text = link[..<count].map { UInt8(bitPattern: $0) }
                guard try SHA1Hasher.objectName("blob", text) == entry.object else {
                    throw Changed(description: "\(shown(entry.name)) points elsewhere")
                }
                link[count] = 0
                guard symlinkat(link, to, name) == 0 else {
                    throw FileError(path: target + "/" + shown(entry.name), action: "copy", errno: errno)
                }
            }
        }
    }

    private mutating func copyFile(
        _ name: [CChar], entry: GitObjects.Entry, info: stat, from: Int32, to: Int32, shown: String, target: String
    ) throws {
        // O_NONBLOCK: a FIFO put in the file's place since fstatat still opens at once.
        let input = openat(from, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard input >= 0 else { throw Changed(description: "\(shown) cannot be read (\(errnoText()))") }
        defer { close(input) }
        var opened = stat()
        guard fstat(input, &opened) == 0, opened.st_mode & S_IFMT == S_IFREG else {
            throw Changed(description: "\(shown) is no longer a file")
        }
        // No host takes a file this big into git (GitHub refuses 100 MB): a sparse giant put in
        // a file's place is a change, found without reading it.
        guard opened.st_size <= Self.maxFileBytes else { throw Changed(description: "\(shown) changed") }
        let output = openat(to, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, info.st_mode & 0o777)
        guard output >= 0 else { throw FileError(path: target + "/" + shown, action: "copy", errno: errno) }
        defer { close(output) }
        var hasher = try SHA1Hasher()
        try hasher.update(Array("blob \(opened.st_size)\0".utf8))
        var total: Int64 = 0
        while true {
            try StopToken.signals.check()
            let count = buffer.withUnsafeMutableBytes { Glibc.read(input, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw Changed(description: "\(shown) cannot be read (\(errnoText()))") }
            if count == 0 { break }
            total += Int64(count)
            let written = try buffer.withUnsafeBytes { bytes in
                let chunk = UnsafeRawBufferPointer(rebasing: bytes[..<count])
                try hasher.update(chunk)
                return Files.writeAll(chunk, to: output)
            }
            guard written else { throw FileError(path: target + "/" + shown, action: "write", errno: errno) }
        }
        guard total == Int64(opened.st_size), try hasher.finish() == entry.object else {
            throw Changed(description: "\(shown) changed")
        }
        fchmod(output, info.st_mode & 0o7777)
        var times = [info.st_atim, info.st_mtim]
        futimens(output, &times)
    }
}

private func errnoText() -> String { String(cString: strerror(errno)) }
