import CMultipackSpawn
import Glibc
import Synchronization

/// Whether multipack was asked to stop (SIGTERM, SIGINT, SIGHUP or SIGQUIT, SPEC §11), by which
/// signal, and a descriptor that polls readable from then on, so that a wait wakes at once.
/// Every stage reads the one in its context; none polls a global.
public struct StopToken: Sendable {
    private enum Source: Sendable {
        case signals
        case manual(ManualStop)
    }
    private let source: Source

    /// This process's stop signals, as CMultipackSpawn's handler records them (nothing until
    /// `installSignalHandlers`).
    public static let signals = StopToken(source: .signals)

    /// A token stopped by calling `request` on `manual` (tests; a caller that cancels).
    public init(_ manual: ManualStop) { source = .manual(manual) }

    private init(source: Source) { self.source = source }

    /// The signal multipack was asked to stop with, if any.
    public var signal: Int32? {
        let value: Int32
        switch source {
        case .signals: value = multipack_stop_signal()
        case .manual(let manual): value = manual.recorded.load(ordering: .acquiring)
        }
        return value == 0 ? nil : value
    }

    public var isRequested: Bool { signal != nil }

    /// Polls readable once a stop was requested; -1 when nothing can request one.
    public var descriptor: Int32 {
        switch source {
        case .signals: return multipack_stop_descriptor()
        case .manual(let manual): return manual.readEnd
        }
    }

    /// What a running child gets: the signal itself, except SIGQUIT, which asks for a core dump
    /// that nobody wants from a build: SIGTERM then.
    var forwardedSignal: Int32 { signal.map { $0 == SIGQUIT ? SIGTERM : $0 } ?? SIGTERM }

    /// Whether the signal handler has already passed the stop on to every registered child.
    var passedOnByHandler: Bool {
        if case .signals = source { return true }
        return false
    }

    /// Throws `StopRequested` once a stop was requested: for a library's long loop, whose caller
    /// knows the stage and says where the build was.
    public func check() throws(StopRequested) {
        if let signal { throw StopRequested(signal: signal) }
    }

    /// As `check()`, saying what the library was doing (`while downloading`), for its caller's message.
    public func check(phase: String) throws(StopRequested) {
        if let signal { throw StopRequested(signal: signal, phase: phase) }
    }

    /// Throws the build's interruption, saying where it was ("while …"), once a stop was requested.
    public func check(_ context: @autoclosure () -> String) throws(MultipackError) {
        if let signal { throw .interrupted(signal, context()) }
    }

    /// Waits `duration`, waking early when a stop is requested. Returns false when it was.
    @discardableResult
    public func sleep(_ duration: Duration) -> Bool {
        let clock = ContinuousClock()
        let end = clock.now + duration
        while !isRequested {
            let left = end - clock.now
            guard left > .zero else { return true }
            let milliseconds = Int32(min(left, .seconds(1)).milliseconds.rounded(.up))
            var poll = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            _ = Glibc.poll(&poll, 1, max(1, milliseconds))
        }
        return false
    }

    /// Installs the stop handlers (CMultipackSpawn's `multipack_stop_install`). Once per process,
    /// before anything is started.
    public static func installSignalHandlers() {
        _ = multipack_stop_install()
    }
}

/// A library's loop stopped because multipack was asked to stop; the stage it ran for turns it
/// into the build's `MultipackError.interrupted`, naming where the build was.
public struct StopRequested: Error, Sendable {
    public var signal: Int32
    /// What it was doing, as `while downloading`; nil when it does not say.
    public var phase: String?

    public init(signal: Int32, phase: String? = nil) {
        self.signal = signal
        self.phase = phase
    }
}

/// The stop of a `StopToken(manual)`: the first `request` counts.
public final class ManualStop: Sendable {
    fileprivate let recorded = Atomic<Int32>(0)
    fileprivate let readEnd: Int32
    private let writeEnd: Int32

    public init() {
        var fds: [Int32] = [-1, -1]
        _ = multipack_pipe(&fds)
        readEnd = fds[0]
        writeEnd = fds[1]
    }

    deinit {
        close(readEnd)
        close(writeEnd)
    }

    public func request(_ signal: Int32 = SIGTERM) {
        guard recorded.compareExchange(expected: 0, desired: signal, ordering: .acquiringAndReleasing).exchanged else {
            return
        }
        var byte: UInt8 = 1
        _ = write(writeEnd, &byte, 1)
    }
}

extension Duration {
    var milliseconds: Double { seconds * 1000 }
}
