import CMultipackSys
import Glibc

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
    }

    public var executable: String
    public var arguments: [String]
    public var workingDirectory: String?
    public var environment: [String: String]
    public var stdout: Output = .capture
    public var stderr: Output = .capture

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
    public var description: String {
        "could not start \(executable): \(String(cString: strerror(errno)))"
    }
}

/// Runs commands with posix_spawn. Never reads one pipe to the end before the other.
public enum Spawner {
    public static func run(_ command: Command) throws -> ProcessResult {
        let start = ContinuousClock.now
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }

        // Own process group; default signal dispositions and an empty mask in the child.
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGQUIT, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        if let directory = command.workingDirectory {
            posix_spawn_file_actions_addchdir_np(&actions, directory)
        }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        var pipes: [(read: Int32, write: Int32, target: Int32)] = []
        for (mode, target) in [(command.stdout, Int32(1)), (command.stderr, Int32(2))] {
            switch mode {
            case .inherit: break
            case .discard: posix_spawn_file_actions_addopen(&actions, target, "/dev/null", O_WRONLY, 0)
            case .capture:
                var fds: [Int32] = [0, 0]
                guard pipe2(&fds, O_CLOEXEC) == 0 else {
                    throw SpawnError(executable: command.executable, errno: errno)
                }
                posix_spawn_file_actions_adddup2(&actions, fds[1], target)
                pipes.append((fds[0], fds[1], target))
            }
        }
        let argv = ([command.executable] + command.arguments).map { strdup($0) } + [nil]
        let envp = command.environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let spawned = posix_spawnp(&pid, command.executable, &actions, &attributes, argv, envp)
        pipes.forEach { close($0.write) }
        guard spawned == 0 else {
            pipes.forEach { close($0.read) }
            throw SpawnError(executable: command.executable, errno: spawned)
        }
        ChildProcessGroups.shared.add(pid)
        defer { ChildProcessGroups.shared.remove(pid) }

        var captured: [Int32: [UInt8]] = [1: [], 2: []]
        drain(pipes.map { ($0.read, $0.target) }, into: &captured)
        let termination = waitFor(pid)
        return ProcessResult(
            termination: termination, stdout: captured[1] ?? [], stderr: captured[2] ?? [],
            seconds: start.duration(to: .now).seconds)
    }

    /// Reads every pipe until EOF, whichever has data first.
    private static func drain(_ pipes: [(fd: Int32, target: Int32)], into captured: inout [Int32: [UInt8]]) {
        var open = pipes
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !open.isEmpty {
            var polls = open.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            if poll(&polls, nfds_t(polls.count), -1) < 0 {
                if errno == EINTR { continue }
                break
            }
            var stillOpen: [(fd: Int32, target: Int32)] = []
            for (index, entry) in open.enumerated() {
                guard polls[index].revents != 0 else {
                    stillOpen.append(entry)
                    continue
                }
                let count = buffer.withUnsafeMutableBytes { read(entry.fd, $0.baseAddress, $0.count) }
                if count > 0 {
                    captured[entry.target, default: []].append(contentsOf: buffer[0..<count])
                    stillOpen.append(entry)
                } else if count < 0 && (errno == EINTR || errno == EAGAIN) {
                    stillOpen.append(entry)
                } else {
                    close(entry.fd)
                }
            }
            open = stillOpen
        }
    }

    /// Waits for the child. Once multipack has been asked to stop, the child's group gets a grace
    /// period and is then killed, so that nothing is left behind.
    private static func waitFor(_ pid: pid_t) -> Termination {
        var status: Int32 = 0
        var killDeadline: ContinuousClock.Instant?
        while true {
            let options = killDeadline == nil ? Int32(0) : WNOHANG
            let result = waitpid(pid, &status, options)
            if result == pid { break }
            if result < 0 && errno != EINTR { return .exited(127) }
            if SignalForwarding.received != 0 {
                let deadline = killDeadline ?? ContinuousClock.now + .seconds(5)
                killDeadline = deadline
                if ContinuousClock.now >= deadline { kill(-pid, SIGKILL) }
                usleep(20_000)
            }
        }
        if SignalForwarding.received != 0 {
            // Whatever the child started and left running goes too.
            kill(-pid, SIGKILL)
        }
        if status & 0x7f == 0 { return .exited((status >> 8) & 0xff) }
        return .signaled(status & 0x7f)
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
