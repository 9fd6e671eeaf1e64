import Glibc
import Synchronization

/// One progress line for all the layers a pull downloads at once (SPEC §9, §15): bytes, percent,
/// rate and time left. On a terminal it is redrawn in place every second; in a log (no terminal)
/// a new line comes after the first second and every five seconds, without carriage returns.
final class PullProgress: Sendable {
    private struct State {
        var received: [Int64]
        var nextReport: ContinuousClock.Instant
        var drawn = false
    }

    private let sizes: [Int64]
    private let total: Int64
    private let label: String
    private let terminal: Bool
    private let write: @Sendable (String) -> Void
    private let started = ContinuousClock.now
    private let state: Mutex<State>

    /// `sizes` are the sizes of the blobs to download, by the index `update` is given.
    init(label: String, sizes: [Int64], terminal: Bool, write: @escaping @Sendable (String) -> Void) {
        self.label = label
        self.sizes = sizes
        self.total = sizes.reduce(0, +)
        self.terminal = terminal
        self.write = write
        state = Mutex(State(received: sizes.map { _ in 0 }, nextReport: started + .seconds(1)))
    }

    /// Whether standard output is a terminal.
    static var outputIsTerminal: Bool { isatty(1) == 1 }

    /// How far blob `index` is (bytes of its current attempt); prints the line when it is due.
    func update(_ index: Int, bytes: Int64) {
        let now = ContinuousClock.now
        let line = state.withLock { state -> String? in
            state.received[index] = min(bytes, sizes[index])
            guard now >= state.nextReport else { return nil }
            state.nextReport = now + (terminal ? .seconds(1) : .seconds(5))
            state.drawn = true
            return self.line(received: state.received.reduce(0, +), now: now)
        }
        if let line { write(terminal ? "\r\u{1B}[K" + line : line + "\n") }
    }

    /// Blob `index` is complete.
    func finish(_ index: Int) { update(index, bytes: sizes[index]) }

    /// Ends a line drawn in place, so what follows starts on its own.
    func close() {
        let drawn = state.withLock { $0.drawn }
        if terminal && drawn { write("\n") }
    }

    private func line(received: Int64, now: ContinuousClock.Instant) -> String {
        let seconds = (now - started).seconds
        let rate = seconds > 0 ? Int64((Double(received) / seconds).rounded()) : 0
        var text = "       \(label): \(DownloadProgress.format(bytes: received))"
        if total > 0 { text += " of \(DownloadProgress.format(bytes: total)) (\(min(100, received * 100 / total))%)" }
        text += ", \(DownloadProgress.format(bytes: rate))/s"
        if total > received {
            text +=
                rate > 0
                ? ", \(DownloadProgress.format(seconds: (total - received + rate - 1) / rate)) left" : ", stalled"
        }
        return text
    }
}
