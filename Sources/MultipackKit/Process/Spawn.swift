import CMultipackSpawn
import Glibc
import Synchronization

/// How a process ended: its exit code, or the signal that killed it.
public enum Termination: Equatable, Sendable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    public var succeeded: Bool { self == .exited(0) }

    public var description: String {
        switch self {
        case .exited(let code): return "exit code \(code)"
        case .signaled(let signal): return "signal \(signalName(signal))"
        }
    }
}

/// What a finished process leaves behind. Output is only captured where the command asked for it.
public struct ProcessResult: Sendable {
    public var termination: Termination
    public var stdout: [UInt8]
    public var stderr: [UInt8]
    public var seconds: Double

    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
}

/// One command to run. Children always get a process group of their own, so that a signal can
/// reach everything they started (SPEC §11).
public struct Command: Sendable {
    public enum Output: Sendable {
        /// Shares multipack's stdout/stderr: a child's compile output streams live and unchanged.
        case inherit
        /// Read into memory (detect, release, git plumbing).
        case capture
        /// Thrown away.
        case discard
        /// Written to this descriptor of multipack's (a pipe it reads itself).
        case descriptor(Int32)
    }

    public enum Input: Sendable {
        /// /dev/null: a build's children never read the caller's input.
        case null
        /// multipack's own stdin (`run`'s one-off command: `echo hi | multipack run APP -- cat`).
        case inherit
    }

    public var executable: String
    public var arguments: [String]
    public var workingDirectory: String?
    public var environment: [String: String]
    public var stdout: Output = .capture
    public var stderr: Output = .capture
    public var stdin: Input = .null
    /// A pty's slave: the command's controlling terminal and its stdin, stdout and stderr, in a
    /// session of its own (`stdin`, `stdout` and `stderr` are not used then). `Spawner.run`
    /// closes it once the command started.
    var terminal: Int32?
    /// A session of its own without a terminal: the caller's terminal is not the command's, and
    /// `/dev/tty` opens nothing (a dyno's processes).
    var ownSession = false
    /// A descriptor the command gets as its descriptor 3 (the socket a `multipack dyno` inside a
    /// namespace sends its pty's master through).
    var passedDescriptor: Int32?
    /// How long the command has after a stop before SIGKILL, when not the usual grace (a dyno's
    /// processes get Heroku's 30 s).
    var grace: Duration?
    /// Who the command runs for, as a warning names it (`buildpack [2/3] Node.js (bin/compile)`).
    public var owner: String?
    /// Bytes kept of each captured stream; the rest is read and dropped, so a child that prints
    /// without end neither blocks nor costs memory (SPEC §11).
    public var captureLimit = Command.defaultCaptureLimit
    public static let defaultCaptureLimit = 16 << 20
    /// Whether the command is no longer needed (another fetch failed): it is then stopped as for a
    /// signal, SIGTERM, a grace period, SIGKILL.
    public var isCancelled: (@Sendable () -> Bool)?
    /// A namespace the process is started in, made by multipack itself (the direct sandbox).
    var namespace: NamespacePlan?
    /// The process is multipack inside a namespace: it (and bubblewrap around it, which passes no
    /// signal on) starts with the stop signals blocked until multipack's own handlers take them,
    /// and it gets twice the grace, to stop its child and unwind (hooks back, outcome written).
    var stopsItself = false

    public init(
        _ executable: String, _ arguments: [String] = [], in workingDirectory: String? = nil,
        environment: [String: String], stdout: Output = .capture, stderr: Output = .capture
    ) {
        self.executable = executable
        self.arguments = arguments
        self.workingDirectory = workingDirectory
        self.environment = environment
        self.stdout = stdout
        self.stderr = stderr
    }

    /// The command as a shell would show it, for `BUILDPACK_XTRACE`.
    public var traceLine: String {
        ([executable] + arguments).map { word in
            word.allSatisfy({ $0.isLetter || $0.isNumber || "/._-=:@%+,".contains($0) }) && !word.isEmpty
                ? word : "'" + word.replacing("'", with: "'\\''") + "'"
        }.joined(separator: " ")
    }
}

public struct SpawnError: Error, CustomStringConvertible {
    public var executable: String
    public var errno: Int32
    /// The step of the namespace's set-up that failed, when it was not the exec.
    var namespaceStep: String?
    public var description: String {
        guard let namespaceStep else { return "could not start \(executable): \(String(cString: strerror(errno)))" }
        return
            "could not set up the namespace for \(executable) (\(namespaceStep)): \(String(cString: strerror(errno)))"
    }
}

/// Runs commands (started as posix_spawn starts them, plus a parent-death signal). Never reads one
/// pipe to the end before the other.
public enum Spawner {
    /// How long a child that was asked to stop may take before it gets SIGKILL. Short enough that
    /// multipack exits within 5 seconds of a signal whatever the child does (SPEC §11).
    static let grace: Duration = .seconds(2)
    /// How long a captured stage's pipes are read after the process exited: a daemon it left on
    /// its stdout must not hold the build.
    static let drainAfterExit: Duration = .seconds(1)

    /// Held while a child starts and while leftovers are looked for, so that the search never
    /// takes a child that was just started for one of ours.
    static let starting = Mutex(())

    /// A started child: its pid, and the reading ends of the pipes it writes what is captured to
    /// (with the descriptor, 1 or 2, each stands for).
    struct Started {
        var pid: pid_t
        var pipes: [(fd: Int32, target: Int32)]
    }

    /// Runs `command` to its end. A stop requested through `stop` reaches the child's process
    /// group (the signal handler passes it on; a manual token's stop is sent from here), then
    /// SIGKILL after the grace period.
    public static func run(_ command: Command, stop: StopToken = .signals) throws -> ProcessResult {
        let start = ContinuousClock.now
        let started = try self.start(command)
        // The terminal is the child's alone: once multipack's copy is closed, the pty's master
        // reads end-of-file as soon as the command and what it started are gone.
        if let terminal = command.terminal { close(terminal) }
        let pid = started.pid
        let (termination, captured) = supervise(
            pid, pipes: started.pipes, limit: command.captureLimit,
            grace: command.grace ?? (command.stopsItself ? grace * 2 : grace), stop: stop,
            isCancelled: command.isCancelled, repeatsStop: command.stopsItself)
        multipack_children_remove(pid)
        // Plumbing (git while fetching in parallel) is swept once when the fetch stage ends.
        if let owner = command.owner { stopLeftovers(owner: owner) }
        return ProcessResult(
            termination: termination, stdout: captured[1] ?? [], stderr: captured[2] ?? [],
            seconds: start.duration(to: .now).seconds)
    }

    /// Starts `command`, registered for stop signals; the caller waits for it and removes it from
    /// the registry (`multipack_children_remove`) once it ended.
    static func start(_ command: Command) throws -> Started {
        var pipes: [(read: Int32, write: Int32, target: Int32)] = []
        var targets: [Int32] = [-1, -1]
        for (index, mode) in [command.stdout, command.stderr].enumerated() {
            switch mode {
            case .inherit: break
            case .discard: targets[index] = -2
            case .descriptor(let fd): targets[index] = fd
            case .capture:
                var fds: [Int32] = [0, 0]
                guard multipack_pipe(&fds) == 0 else {
                    let code = errno
                    pipes.forEach {
                        close($0.read); close($0.write)
                    }
                    throw SpawnError(executable: command.executable, errno: code)
                }
                targets[index] = fds[1]
                pipes.append((fds[0], fds[1], Int32(index + 1)))
            }
        }
        let argv = ([command.executable] + command.arguments).map { strdup($0) } + [nil]
        let envp = command.environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        let plan = command.namespace.map { $0.words.map { strdup($0) } + [nil] }
        defer { plan?.forEach { free($0) } }
        let blockStops: Int32 = command.stopsItself ? 1 : 0
        let io = multipack_spawn_io(
            in: command.stdin == .inherit ? -1 : -2, out: targets[0], err: targets[1], terminal: command.terminal ?? -1,
            session: command.ownSession ? 1 : 0, pass: command.passedDescriptor ?? -1)
        var pid: pid_t = 0
        let code = starting.withLock { _ in
            command.workingDirectory.withOptionalCString { directory in
                guard let plan else {
                    return multipack_spawn(&pid, command.executable, argv, envp, directory, io, nil, blockStops)
                }
                return multipack_spawn(&pid, command.executable, argv, envp, directory, io, plan, blockStops)
            }
        }
        pipes.forEach { close($0.write) }
        guard code == 0 else {
            pipes.forEach { close($0.read) }
            guard code & MULTIPACK_SANDBOX_FAILED != 0, let namespace = command.namespace else {
                throw SpawnError(executable: command.executable, errno: code)
            }
            throw SpawnError(
                executable: command.executable, errno: code & 0xff,
                namespaceStep: namespace.describe(step: Int(code & ~MULTIPACK_SANDBOX_FAILED) >> 8))
        }
        return Started(pid: pid, pipes: pipes.map { ($0.read, $0.target) })
    }

    /// Reads every pipe whichever has data first, and waits for the child. Once a stop is
    /// requested (or the command cancelled), the child's group gets a grace period and is then
    /// killed; pipes that a leftover process holds open are let go of. `repeatsStop`: the stop is
    /// sent again every 200 ms of the grace, for a multipack in a namespace, which a signal sent
    /// while bubblewrap was still starting it never reached (bubblewrap holds it blocked, and a
    /// forked child does not inherit pending signals).
    private static func supervise(
        _ pid: pid_t, pipes: [(fd: Int32, target: Int32)], limit: Int, grace: Duration, stop: StopToken,
        isCancelled: (@Sendable () -> Bool)?, repeatsStop: Bool
    ) -> (Termination, [Int32: [UInt8]]) {
        var captured: [Int32: [UInt8]] = [1: [], 2: []]
        let exitDescriptor = multipack_pidfd_open(pid)
        defer { if exitDescriptor >= 0 { close(exitDescriptor) } }
        var open = pipes
        var buffer = [UInt8](repeating: 0, count: 65536)
        var status: Int32 = 0
        var exitedAt: ContinuousClock.Instant?
        var killAt: ContinuousClock.Instant?
        var resendAt: ContinuousClock.Instant?
        func letGo() {
            open.forEach { close($0.fd) }
            open = []
        }
        while true {
            if exitedAt == nil {
                let result = waitpid(pid, &status, WNOHANG)
                if result == pid || (result < 0 && errno == ECHILD) { exitedAt = .now }
            }
            if let exitedAt {
                if open.isEmpty { break }
                if ContinuousClock.now - exitedAt >= drainAfterExit { letGo() }
            }
            let stopped = stop.isRequested
            if stopped || (killAt == nil && isCancelled?() == true) {
                // The signal handler passed a stop on already; a cancellation or a manual stop is sent here.
                if killAt == nil && !(stopped && stop.passedOnByHandler) {
                    kill(-pid, stopped ? stop.forwardedSignal : SIGTERM)
                }
                if stopped && repeatsStop && exitedAt == nil {
                    if let due = resendAt, ContinuousClock.now >= due { kill(-pid, stop.forwardedSignal) }
                    if resendAt.map({ ContinuousClock.now >= $0 }) ?? true { resendAt = .now + .milliseconds(200) }
                }
                let deadline = killAt ?? ContinuousClock.now + grace
                killAt = deadline
                if ContinuousClock.now >= deadline {
                    kill(-pid, SIGKILL)
                    letGo()
                }
            }
            // The exit descriptor (or a short timeout without one) wakes us when the child ends,
            // the stop descriptor when a stop is requested.
            var polls = open.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            if exitedAt == nil && exitDescriptor >= 0 {
                polls.append(pollfd(fd: exitDescriptor, events: Int16(POLLIN), revents: 0))
            }
            if killAt == nil && stop.descriptor >= 0 {
                polls.append(pollfd(fd: stop.descriptor, events: Int16(POLLIN), revents: 0))
            }
            let timeout: Int32 = exitedAt == nil && exitDescriptor < 0 ? 10 : 100
            let ready = poll(&polls, nfds_t(polls.count), timeout)
            guard ready > 0 else { continue }
            var stillOpen: [(fd: Int32, target: Int32)] = []
            for (index, entry) in open.enumerated() {
                guard polls[index].revents != 0 else {
                    stillOpen.append(entry)
                    continue
                }
                let count = buffer.withUnsafeMutableBytes { read(entry.fd, $0.baseAddress, $0.count) }
                if count > 0 {
                    let room = max(0, limit - (captured[entry.target]?.count ?? 0))
                    captured[entry.target, default: []].append(contentsOf: buffer[0..<min(count, room)])
                    stillOpen.append(entry)
                } else if count < 0 && (errno == EINTR || errno == EAGAIN) {
                    stillOpen.append(entry)
                } else {
                    close(entry.fd)
                }
            }
            open = stillOpen
        }
        if stop.isRequested {
            // Whatever the child started in its group and left running goes too.
            kill(-pid, SIGKILL)
        }
        if status & 0x7f == 0 { return (.exited((status >> 8) & 0xff), captured) }
        return (.signaled(status & 0x7f), captured)
    }
}

extension Optional where Wrapped == String {
    fileprivate func withOptionalCString<R>(_ body: (UnsafePointer<CChar>?) -> R) -> R {
        switch self {
        case .some(let text): return text.withCString { body($0) }
        case .none: return body(nil)
        }
    }
}

extension Duration {
    var seconds: Double {
        let (whole, attoseconds) = components
        return Double(whole) + Double(attoseconds) / 1e18
    }
}

func signalName(_ signal: Int32) -> String {
    switch signal {
    case SIGTERM: return "SIGTERM"
    case SIGINT: return "SIGINT"
    case SIGKILL: return "SIGKILL"
    case SIGHUP: return "SIGHUP"
    case SIGSEGV: return "SIGSEGV"
    case SIGABRT: return "SIGABRT"
    case SIGPIPE: return "SIGPIPE"
    case SIGQUIT: return "SIGQUIT"
    default: return "\(signal)"
    }
}
