import CMultipackSpawn
import Glibc

/// A private temporary directory (SPEC §5, "nothing is left behind"). Its name carries the owning
/// process and the owner holds a lock on it, so that what a killed multipack left can be told from
/// a running one's and swept by the next command: a dead pid alone is not enough (another PID
/// namespace sharing the directory has other pids), and a live pid may be a reused one.
struct ScratchDirectory: Sendable {
    /// What each kind of multipack process keeps in TMPDIR, as `multipack-<kind>-<pid>-XXXXXX`.
    enum Kind: String, CaseIterable {
        case children, clone, archive, lock, run, package
        var prefix: String { "multipack-\(rawValue)-" }
    }

    let path: String
    private let lock: Int32

    /// Creates `TMPDIR/multipack-<kind>-<pid>-XXXXXX`, locked until `remove()`.
    init(_ kind: Kind) throws {
        try self.init(prefix: kind.prefix, in: Files.temporaryRoot)
    }

    /// A name of the same shape, `<parent>/<prefix><pid>-XXXXXX`, for an entry made by a rename
    /// (one that refuses a name taken): nothing is created.
    static func name(prefix: String, in parent: String) -> String {
        // Six base-36 digits (36⁵ up to 36⁶), as mkstemp's XXXXXX would be.
        "\(parent)/\(prefix)\(getpid())-\(String(UInt32.random(in: 60_466_176..<2_176_782_336), radix: 36))"
    }

    /// Creates `<parent>/<prefix><pid>-XXXXXX`, locked until `remove()`: a directory, or an
    /// empty file for a single file written and renamed into place (the slug).
    init(prefix: String, in parent: String, file: Bool = false) throws {
        // A sweeper elsewhere can take a new entry between its making and flock; then it is gone
        // (or locked by that sweeper) and another name is made.
        for _ in 0..<8 {
            var template = Array("\(parent)/\(prefix)\(getpid())-XXXXXX".utf8CString)
            // Close-on-exec: a daemon a child leaves behind must not keep the lock alive.
            var lock: Int32 = -1
            let made = template.withUnsafeMutableBufferPointer { buffer -> Bool in
                if file {
                    // Close-on-exec from the start: children are spawned on other threads meanwhile.
                    lock = multipack_make_temporary_file(buffer.baseAddress!)
                    return lock >= 0
                }
                guard mkdtemp(buffer.baseAddress!) != nil else { return false }
                lock = open(buffer.baseAddress!, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                return true
            }
            guard made else { throw FileError(path: parent, action: "create a temporary file in", errno: errno) }
            let path = Files.string(template)
            if lock >= 0, flock(lock, LOCK_EX | LOCK_NB) == 0, Self.isSame(lock, path) {
                self.path = path
                self.lock = lock
                return
            }
            if lock >= 0 { close(lock) }
        }
        throw FileError(path: parent, action: "lock a temporary file in", errno: EAGAIN)
    }

    /// Removes it (a directory with everything in it). Runs on every outcome.
    func remove() {
        Files.remove(path)
        unlock()
    }

    /// Lets go of the lock and leaves the entry: it holds another file now (`replaceWhole`'s
    /// exchange), which the sweep may take.
    func unlock() {
        if lock >= 0 { close(lock) }
    }

    /// Removes what dead multipack processes left in TMPDIR, every kind.
    static func sweepTemporaryRoot() {
        sweep(prefixes: Kind.allCases.map(\.prefix), in: Files.temporaryRoot)
    }

    /// Removes the entries of `root` named `<prefix><pid>-XXXXXX` whose lock nobody holds. The lock
    /// decides, not the pid: a build in a PID namespace of its own is pid 1 or 2 there, every time,
    /// so the pid of a killed one is a live process's (even the sweeper's own), here and outside;
    /// its owner holds the lock for the entry's whole life, and a second open of the entry by that
    /// same process does not get it either.
    /// With `containing`, a marker anywhere in the name will do (`<name>.partial-<pid>-XXXXXX`, for
    /// every file of a directory at once).
    static func sweep(prefixes: [String], in root: String, containing: Bool = false) {
        guard let names = try? ArchiveTree.contents(of: root) else { return }
        let dead = names.filter { name in
            prefixes.contains { marker in
                guard containing else { return name.hasPrefix(marker) && ownerPID(name, prefix: marker) != nil }
                guard let range = name.ranges(of: marker).last else { return false }
                return ownerPID(String(name[range.lowerBound...]), prefix: marker) != nil
            }
        }
        for name in dead {
            let path = root + "/" + name
            // Non-blocking: a FIFO given such a name is never waited on.
            let descriptor = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
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

    /// Whether the open directory is still the one at `path` (not swept away meanwhile).
    private static func isSame(_ descriptor: Int32, _ path: String) -> Bool {
        var open = stat()
        var named = stat()
        return fstat(descriptor, &open) == 0 && lstat(path, &named) == 0 && open.st_ino == named.st_ino
            && open.st_dev == named.st_dev
    }
}
