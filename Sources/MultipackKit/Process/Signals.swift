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

    func add(_ pid: pid_t) {
        lock.withLock { _ in
            for index in 0..<Self.capacity where slots[index] == 0 {
                slots[index] = pid
                return
            }
        }
        // A signal that came in before the child was registered still reaches it.
        if SignalForwarding.received != 0 { kill(-pid, SignalForwarding.received) }
    }

    func remove(_ pid: pid_t) {
        lock.withLock { _ in
            for index in 0..<Self.capacity where slots[index] == pid { slots[index] = 0 }
        }
    }
}

/// SIGTERM and SIGINT are passed on to every running child's process group; multipack then
/// unwinds (hooks put back) and exits non-zero (SPEC §11).
public enum SignalForwarding {
    nonisolated(unsafe) static var received: Int32 = 0

    /// The signal multipack was asked to stop with, if any.
    public static var stopSignal: Int32? { received == 0 ? nil : received }

    public static func install() {
        // A parent may have started us with these blocked; they must reach the handler.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        sigaddset(&unblock, SIGTERM)
        sigaddset(&unblock, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        for signal in [SIGTERM, SIGINT] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { signal in
                SignalForwarding.received = signal
                let groups = ChildProcessGroups.shared.slots
                for index in 0..<ChildProcessGroups.capacity where groups[index] > 0 {
                    kill(-groups[index], signal)
                }
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = 0  // no SA_RESTART: waitpid returns EINTR so the wait loop notices
            sigaction(signal, &action, nil)
        }
    }
}
