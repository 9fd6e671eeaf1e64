import Glibc

/// A build's private directory in TMPDIR (SPEC §5, "nothing is left behind"). Its name carries
/// the owning process and the owner holds a lock on it, so that what a killed build left can be
/// told from a running build's and swept by the next one.
struct ScratchDirectory {
    let path: String
    private let lock: Int32

    /// Creates `TMPDIR/<prefix><pid>-XXXXXX`, locked until `remove()`.
    init(prefix: String) throws {
        path = try Files.temporaryDirectory(prefix: "\(prefix)\(getpid())-")
        // Close-on-exec: a daemon a child leaves behind must not keep the lock alive.
        lock = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if lock >= 0 { flock(lock, LOCK_EX | LOCK_NB) }
    }

    /// Removes the directory and everything in it. Runs on every outcome.
    func remove() {
        Files.remove(path)
        if lock >= 0 { close(lock) }
    }

    /// Removes what builds that are gone left under TMPDIR with this prefix: entries whose
    /// process is not running and whose lock nobody holds (a build in another PID namespace
    /// that shares TMPDIR still holds its lock).
    static func sweep(prefix: String, in root: String = Files.temporaryRoot) {
        guard let directory = opendir(root) else { return }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name.hasPrefix(prefix) { names.append(name) }
        }
        closedir(directory)
        for name in names {
            guard let pid = ownerPID(name, prefix: prefix), pid != getpid(), kill(pid, 0) != 0, errno == ESRCH else {
                continue
            }
            let path = root + "/" + name
            let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard descriptor >= 0 else { continue }
            if flock(descriptor, LOCK_EX | LOCK_NB) == 0 { Files.remove(path) }
            close(descriptor)
        }
    }

    /// The pid in `<prefix><pid>-XXXXXX`, or nil for a name of another shape.
    static func ownerPID(_ name: String, prefix: String) -> pid_t? {
        let rest = name.dropFirst(prefix.count)
        guard let dash = rest.firstIndex(of: "-"), rest[rest.index(after: dash)...].count == 6 else { return nil }
        return pid_t(rest[..<dash]).flatMap { $0 > 0 ? $0 : nil }
    }
}
