import Glibc

/// multipack's own part of CACHE_DIR, `CACHE_DIR/.multipack/` (SPEC §5). The children get CACHE_DIR
/// too, so nothing in it is trusted: directories are checked to be directories (a symlink is never
/// followed out of the cache), files to be regular files, names read from records to be digests,
/// and archives against their digest on every use.
struct CacheStore: Sendable {
    let root: String

    /// Opens the store, creating what is missing and sweeping the staging that dead builds left.
    /// Nil, with the reason, when CACHE_DIR cannot be written: the build then runs without it.
    static func open(cacheDir: String) -> Result<CacheStore, FileError> {
        let store = CacheStore(root: cacheDir + "/.multipack")
        do {
            for path in [store.root, store.archives, store.root + "/urls", store.staging, store.root + "/git"] {
                try realDirectory(path)
            }
            // Writable (permissions, a read-only mount) without making anything: a warm build
            // writes nothing in the cache, and every directory made costs an inode.
            guard faccessat(AT_FDCWD, store.staging, W_OK | X_OK, AT_EACCESS) == 0 else {
                throw FileError(path: store.staging, action: "write in", errno: errno)
            }
        } catch let error as FileError {
            return .failure(error)
        } catch {
            return .failure(FileError(path: store.root, action: "use", errno: EIO, detail: "\(error)"))
        }
        store.sweepStaging()
        return .success(store)
    }

    var archives: String { root + "/archives" }
    var staging: String { root + "/staging" }

    /// A private directory for one download or clone, on the cache's filesystem (so that keeping
    /// the result is a rename, whatever filesystem TMPDIR is on), named after this process so that
    /// the next build can tell what a killed one left.
    func stagingDirectory() throws -> ScratchDirectory {
        try ScratchDirectory(prefix: "", in: staging)
    }

    /// Removes the staging of builds whose process is gone (`<pid>-XXXXXX`, unlocked).
    private func sweepStaging() {
        ScratchDirectory.sweep(prefixes: [""], in: staging)
    }

    enum Check {
        case valid(String)
        /// It was there but is not what its name says; it has been dropped.
        case changed(String)
        case missing
    }

    /// The cached archive with this digest, read whole and checked against it.
    func verifiedArchive(_ digest: String) -> Check {
        guard Self.isDigest(digest) else { return .missing }
        let path = "\(archives)/\(digest).archive"
        var info = stat()
        guard lstat(path, &info) == 0 else { return .missing }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            drop(digest)
            return .changed("it is no longer a regular file")
        }
        guard let actual = try? sha256Hex(ofFile: path) else {
            drop(digest)
            return .changed("it could not be read")
        }
        guard actual == digest else {
            drop(digest)
            return .changed("its digest is now \(actual.prefix(12))")
        }
        return .valid(path)
    }

    func drop(_ digest: String) {
        guard Self.isDigest(digest) else { return }
        Files.remove("\(archives)/\(digest).archive")
    }

    /// Keeps a downloaded archive under its digest (a rename: staging is on this filesystem).
    func keep(_ staged: String, digest: String) throws {
        try CacheLock.withLock(in: root) {
            if case .valid = verifiedArchive(digest) { return }
            try Files.move(staged, to: "\(archives)/\(digest).archive")
        }
    }

    func recordPath(for url: String) -> String { "\(root)/urls/\(cacheKey(url))" }

    /// A small record file, if it is one: a symlink or anything else is not read.
    static func readRecord(_ path: String) -> String? {
        var info = stat()
        guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, info.st_size < 65536 else { return nil }
        return try? Files.read(path)
    }

    /// A regular file's bytes, if it is one of at most `limit` bytes (a symlink is not followed,
    /// a FIFO never waited for).
    static func readBounded(_ path: String, limit: Int) -> [UInt8]? {
        var info = stat()
        guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, info.st_size <= limit else { return nil }
        guard let bytes = try? Files.readRegularFile(path, limit: limit) else { return nil }
        return bytes
    }

    func writeRecord(_ text: String, to path: String) throws {
        try CacheLock.withLock(in: root) { try Files.write(text, to: path) }
    }

    /// 64 lowercase hex digits: the only names a record may point at.
    static func isDigest(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    /// 40 hex digits.
    static func isCommit(_ text: String) -> Bool {
        text.utf8.count == 40 && text.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    /// A directory that is one, not a symlink to one elsewhere.
    static func isRealDirectory(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    /// Makes `path` a real directory: a symlink or a file in its place is removed first.
    static func realDirectory(_ path: String) throws {
        var info = stat()
        if lstat(path, &info) == 0 {
            if (info.st_mode & S_IFMT) == S_IFDIR { return }
            if (info.st_mode & S_IFMT) == S_IFLNK || (info.st_mode & S_IFMT) == S_IFREG {
                unlink(path)
            } else {
                Files.remove(path)
            }
        }
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else {
            throw FileError(path: path, action: "create the directory", errno: errno)
        }
        guard isRealDirectory(path) else {
            throw FileError(path: path, action: "create the directory", errno: ENOTDIR)
        }
    }
}

/// A short stable name for a cache entry (FNV-1a): it only names a directory, and the entry
/// records the URL it belongs to, so a collision is detected rather than trusted.
func cacheKey(_ text: String) -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in text.utf8 {
        hash ^= UInt64(byte)
        hash = hash &* 0x100_0000_01b3
    }
    return String(hash, radix: 16).leftPadded(to: 16)
}

extension String {
    func trimmingCharacters(_ characters: Character...) -> String {
        var s = Substring(self)
        while let last = s.last, characters.contains(last) { s = s.dropLast() }
        while let first = s.first, characters.contains(first) { s = s.dropFirst() }
        return String(s)
    }
}

/// An exclusive lock on CACHE_DIR/.multipack, so builds sharing a cache never see half an entry.
enum CacheLock {
    static func withLock<T>(in root: String, _ body: () throws -> T) throws -> T {
        // O_NOFOLLOW: a symlink put in its place never makes multipack create a file elsewhere.
        func openLock() -> Int32 { open(root + "/lock", O_CREAT | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0o644) }
        var descriptor = openLock()
        if descriptor < 0 && errno == ENOENT {
            try Files.makeDirectory(root)
            descriptor = openLock()
        }
        guard descriptor >= 0 else { throw FileError(path: root + "/lock", action: "open", errno: errno) }
        defer { close(descriptor) }
        while flock(descriptor, LOCK_EX) != 0 && errno == EINTR {}
        defer { flock(descriptor, LOCK_UN) }
        return try body()
    }
}
