import Foundation
import Synchronization

@testable import MultipackKit

/// A clock the test moves: `now` starts at zero and moves by `step` each time it is read (so a
/// loop that waits for time to pass sees it pass), and `sleep` moves it at once and is recorded.
/// With `realTime`, `now` is the real clock's and only the waits are recorded, not slept (for
/// libcurl's own timeouts, which follow the real clock).
final class TestClock: BuildClock {
    private struct State {
        var now: Duration = .zero
        var sleeps: [Duration] = []
    }
    private let state = Mutex(State())
    let step: Duration
    let realTime: Bool

    init(step: Duration = .zero, realTime: Bool = false) {
        self.step = step
        self.realTime = realTime
    }

    var now: Duration {
        if realTime { return SystemClock().now }
        return state.withLock { state in
            defer { state.now += step }
            return state.now
        }
    }

    /// The waits asked for, in order.
    var sleeps: [Duration] { state.withLock { $0.sleeps } }

    func advance(by duration: Duration) { state.withLock { $0.now += duration } }

    func sleep(_ duration: Duration, stop: StopToken) -> Bool {
        state.withLock { state in
            state.sleeps.append(duration)
            state.now += duration
        }
        return !stop.isRequested
    }
}

/// A log that keeps what multipack printed, stdout and stderr apart.
final class CapturedLog: Sendable {
    private let text = Mutex<(out: String, err: String)>(("", ""))
    var log: Log {
        Log { [self] line, descriptor in text.withLock { descriptor == 2 ? ($0.err += line) : ($0.out += line) } }
    }
    var stdout: String { text.withLock { $0.out } }
    var stderr: String { text.withLock { $0.err } }
    var all: String { text.withLock { $0.out + $0.err } }
}

/// Processes played by the test: a command whose executable ends with a name in `scripts` gets
/// what that script does (it may write files, and returns how the process ended); any other
/// command runs for real (bash sourcing an export, git). Every command is recorded.
final class FakeProcesses: ProcessRunner {
    struct Call: Sendable {
        var command: Command
        var stopRequested: Bool
    }
    typealias Script = @Sendable (Command) throws -> ProcessResult
    private let scripts: Mutex<[String: Script]>
    private let recorded = Mutex<[Call]>([])

    init(_ scripts: [String: Script] = [:]) {
        self.scripts = Mutex(scripts)
    }

    func on(_ suffix: String, _ script: @escaping Script) { scripts.withLock { $0[suffix] = script } }

    var calls: [Call] { recorded.withLock { $0 } }
    /// The commands run, as `bin/compile`-like tails of their executables.
    var ran: [String] { calls.map { Self.tail($0.command.executable) } }

    func run(_ command: Command, stop: StopToken) throws -> ProcessResult {
        recorded.withLock { $0.append(Call(command: command, stopRequested: stop.isRequested)) }
        let script = scripts.withLock { scripts in
            scripts.first { command.executable.hasSuffix($0.key) }?.value
        }
        guard let script else { return try Spawner.run(command, stop: stop) }
        return try script(command)
    }

    /// `…/children/2/bin/compile` → `2/bin/compile`.
    static func tail(_ path: String) -> String {
        path.split(separator: "/").suffix(3).joined(separator: "/")
    }

    /// How a played process ended.
    static func exited(_ code: Int32 = 0, stdout: String = "", stderr: String = "", seconds: Double = 0.25)
        -> ProcessResult
    {
        ProcessResult(
            termination: .exited(code), stdout: Array(stdout.utf8), stderr: Array(stderr.utf8), seconds: seconds)
    }
}

extension TempDir {
    /// BUILD_DIR, CACHE_DIR and ENV_DIR made in this directory, as `build`, `cache` and `env`.
    func buildDirectories() -> BuildDirectories {
        BuildDirectories(build: sub("build"), cache: sub("cache"), env: sub("env"))
    }

    /// A buildpack at `relative` whose bin/detect, bin/compile and bin/release exist but are never
    /// run (a `FakeProcesses` plays them).
    func writePlayedBuildpack(_ relative: String) throws {
        for name in ["detect", "compile", "release"] {
            try write("\(relative)/bin/\(name)", "#!/bin/sh\nexit 99\n", executable: true)
        }
    }
}
