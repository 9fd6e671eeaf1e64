import CMultipackSys
import Glibc
import Synchronization

/// The process groups of the children running right now (several while fetching in parallel).
///
/// The signal handler reads the slots without the lock: a handler may not take one, and an
/// aligned 32-bit load cannot tear. Writers hold the lock among themselves.
final class ChildProcessGroups: Sendable {
    static let shared = ChildProcessGroups()
    static let capacity = 64

    nonisolated(unsafe) let slots: UnsafeMutablePointer<pid_t> = {
        let slots = UnsafeMutablePointer<pid_t>.allocate(capacity: capacity)
        slots.initialize(repeating: 0, count: capacity)
        return slots
    }()
    private let lock = Mutex(())

    /// Starts a child and records it under the lock, so that the search for leftovers never takes
    /// a child that was just started for one of ours.
    func start(_ body: () -> (code: Int32, pid: pid_t)) -> (code: Int32, pid: pid_t) {
        let started = lock.withLock { _ in
            let started = body()
            if started.code == 0 {
                for index in 0..<Self.capacity where slots[index] == 0 {
                    slots[index] = started.pid
                    break
                }
            }
            return started
        }
        // A signal that came in before the child was registered still reaches it.
        if started.code == 0, SignalForwarding.received != 0 {
            kill(-started.pid, SignalForwarding.forwarded)
        }
        return started
    }

    func remove(_ pid: pid_t) {
        lock.withLock { _ in
            for index in 0..<Self.capacity where slots[index] == pid { slots[index] = 0 }
        }
    }

    /// Our children that we did not start ourselves: orphans reparented to us as their subreaper.
    func orphans() -> [(pid: pid_t, name: String, zombie: Bool)] {
        lock.withLock { _ in
            let me = getpid()
            var tracked = Set<pid_t>()
            for index in 0..<Self.capacity where slots[index] != 0 { tracked.insert(slots[index]) }
            return ProcessTable.children(of: me).filter { !tracked.contains($0.pid) }
        }
    }
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

/// SIGTERM, SIGINT, SIGHUP and SIGQUIT are passed on to every running child's process group;
/// multipack then unwinds (hooks put back) and exits non-zero naming the stage (SPEC §11).
public enum SignalForwarding {
    nonisolated(unsafe) static var received: Int32 = 0
    /// Whether this process reaps orphans (set by `install`; never in a test process, whose other
    /// children are not ours to stop).
    nonisolated(unsafe) static var isSubreaper = false

    /// The signal multipack was asked to stop with, if any.
    public static var stopSignal: Int32? { received == 0 ? nil : received }

    /// What the children get: the signal itself, except SIGQUIT, which asks for a core dump that
    /// nobody wants from a build: they get SIGTERM, and multipack stops as for SIGTERM.
    static var forwarded: Int32 { received == SIGQUIT ? SIGTERM : received }

    static let stopSignals = [SIGTERM, SIGINT, SIGHUP, SIGQUIT]

    public static func install() {
        for signal in stopSignals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { signal in
                if SignalForwarding.received == 0 { SignalForwarding.received = signal }
                let groups = ChildProcessGroups.shared.slots
                for index in 0..<ChildProcessGroups.capacity where groups[index] > 0 {
                    kill(-groups[index], SignalForwarding.forwarded)
                }
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = 0  // no SA_RESTART: blocking calls return EINTR so their loops notice
            sigaction(signal, &action, nil)
        }
        // A parent may have started us with these blocked (a local build does, through bubblewrap):
        // unblocked only now, one that came in meanwhile reaches the handler.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for signal in stopSignals { sigaddset(&unblock, signal) }
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        isSubreaper = multipack_become_subreaper() == 0
    }

    /// The exit code multipack ends with: 128 + N once signal N asked it to stop, as shells report
    /// a process that signal N ended (130 after Ctrl-C; SPEC §11), else `code`.
    public static func exitCode(otherwise code: Int32) -> Int32 {
        received == 0 ? code : 128 + received
    }

    /// Whether multipack was asked to stop, for long loops (extraction, merging, downloads).
    public static var shouldStop: Bool { received != 0 }
}
