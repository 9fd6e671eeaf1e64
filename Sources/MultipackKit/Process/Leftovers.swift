import CMultipackSpawn
import Glibc
import Synchronization

/// What a stage leaves running (a daemon a compile started with setsid or nohup) is stopped when
/// the stage ends (SPEC §11): multipack is its children's subreaper, so every orphan becomes its
/// child, and the children it started itself are told apart by CMultipackSpawn's registry.
extension Spawner {
    /// Whether this process reaps orphans (never in a test process, whose other children are not
    /// ours to stop).
    static let isSubreaper = Atomic<Bool>(false)

    /// Makes this process its children's subreaper, and starts the watchdog that kills what they
    /// left in their process groups if this process is killed (SPEC §11). Once, at the start of a
    /// command.
    public static func becomeSubreaper() {
        // First: a watchdog started by a subreaper would be its orphan, and look like a leftover.
        if multipack_watchdog_start() == 0 { atexit { multipack_watchdog_stop() } }
        isSubreaper.store(multipack_become_subreaper() == 0, ordering: .relaxed)
    }

    /// Our children that we did not start ourselves: orphans reparented to us as their subreaper.
    static func orphans() -> [(pid: pid_t, name: String, zombie: Bool)] {
        starting.withLock { _ in
            ProcessTable.children(of: getpid()).filter { multipack_children_contains($0.pid) == 0 }
        }
    }

    /// Stops every process the finished command left behind (a daemon a compile started with
    /// setsid or nohup): they were reparented to multipack, their subreaper. SIGTERM, a second to
    /// go, then SIGKILL; repeated while stopping one orphans more.
    public static func stopLeftovers(owner: String) {
        guard isSubreaper.load(ordering: .relaxed) else { return }
        // No child at all (the common case once a stage's process is reaped): nothing to look for.
        var info = siginfo_t()
        if waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 && errno == ECHILD { return }
        var stopped: [String] = []
        for round in 0..<8 {
            var alive: [pid_t] = []
            for orphan in orphans() {
                if orphan.zombie {
                    var status: Int32 = 0
                    waitpid(orphan.pid, &status, WNOHANG)
                } else {
                    alive.append(orphan.pid)
                    stopped.append("\(orphan.name) (pid \(orphan.pid))")
                    kill(orphan.pid, SIGTERM)
                }
            }
            if alive.isEmpty { break }
            let deadline = ContinuousClock.now + (round == 0 ? .seconds(1) : .milliseconds(200))
            while !alive.isEmpty {
                alive = alive.filter { pid in
                    var status: Int32 = 0
                    return waitpid(pid, &status, WNOHANG) == 0
                }
                if alive.isEmpty { break }
                if ContinuousClock.now >= deadline {
                    for pid in alive {
                        kill(pid, SIGKILL)
                        var status: Int32 = 0
                        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                    }
                    break
                }
                usleep(10_000)
            }
        }
        guard !stopped.isEmpty else { return }
        leftoverWarning(
            "\(owner) left \(stopped.count == 1 ? "a process" : "\(stopped.count) processes") running after it ended: "
                + stopped.joined(separator: ", ") + ". multipack stopped "
                + (stopped.count == 1 ? "it" : "them")
                + ": nothing a build starts may outlive it (a server a build needs must be started by the app at run time)."
        )
    }

    /// Where the warning about leftover processes goes.
    nonisolated(unsafe) public static var leftoverWarning: (String) -> Void = { Log().warning($0) }
}

/// Reads /proc: which processes have a given parent.
enum ProcessTable {
    static func children(of parent: pid_t) -> [(pid: pid_t, name: String, zombie: Bool)] {
        guard let directory = opendir("/proc") else { return [] }
        defer { closedir(directory) }
        var found: [(pid: pid_t, name: String, zombie: Bool)] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        while let entry = readdir(directory) {
            let pid = withUnsafeBytes(of: entry.pointee.d_name) { raw -> pid_t in
                var value: pid_t = 0
                for byte in raw {
                    if byte == 0 { break }
                    guard byte >= 48 && byte <= 57 else { return 0 }
                    value = value * 10 + pid_t(byte - 48)
                }
                return value
            }
            guard pid > 0 else { continue }
            let descriptor = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { continue }
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            close(descriptor)
            guard count > 0 else { continue }
            // "pid (comm) state ppid …": comm may hold spaces and parentheses, so split after the last ')'.
            let text = buffer[..<count]
            guard let open = text.firstIndex(of: UInt8(ascii: "(")),
                let close = text.lastIndex(of: UInt8(ascii: ")"))
            else { continue }
            let fields = text[(close + 1)...].split(separator: UInt8(ascii: " "), maxSplits: 3)
            guard fields.count >= 2, let ppid = pid_t(String(decoding: fields[1], as: UTF8.self)),
                ppid == parent
            else { continue }
            let name = String(decoding: text[(open + 1)..<close], as: UTF8.self)
            found.append((pid, name, fields[0].first == UInt8(ascii: "Z")))
        }
        return found
    }
}
