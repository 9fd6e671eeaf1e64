import CMultipackSpawn
import Glibc

/// Several process types run together, as `heroku local` runs them (SPEC §17): every line each
/// one prints comes out prefixed `<type>.1 | ` (the names padded to one width, a colour each on a
/// terminal); when one exits, the others get SIGTERM and, after the grace, SIGKILL; a stop
/// (Ctrl-C, SIGTERM) does the same for all. The formation ends with the first one's exit code
/// (128 + the signal for a stop), once nothing it started is left.
struct Formation {
    /// One process: `DYNO` (`web.1`) names it.
    struct Member: Codable, Sendable {
        var name: String
        var executable: String
        var arguments: [String]
        var directory: String
        var environment: [String: String]
    }

    var members: [Member]
    var grace: Duration
    /// Colour the prefixes (stdout is a terminal).
    var colors: Bool
    var stop: StopToken
    /// Where the lines go (multipack's stdout); multipack's own notes go to stderr.
    var output: Int32 = 1
    var notes: Log
    /// The ids a root caller's processes take without a namespace (SPEC §15); nil: the caller's.
    var runAs: BuildUser?

    /// The colours `heroku local` cycles through: cyan, yellow, green, magenta, blue, red.
    static let palette = [36, 33, 32, 35, 34, 31]
    /// A line longer than this is let out in pieces: a process that never ends a line must not
    /// cost more memory than this.
    static let maxLine = 64 << 10

    private final class Running {
        let member: Member
        let pid: pid_t
        let prefix: [UInt8]
        var fd: Int32
        var exitDescriptor: Int32
        var partial: [UInt8] = []
        var termination: Termination?

        init(member: Member, pid: pid_t, prefix: [UInt8], fd: Int32) {
            self.member = member
            self.pid = pid
            self.prefix = prefix
            self.fd = fd
            exitDescriptor = multipack_pidfd_open(pid)
        }
    }

    /// Runs them all to their end and returns the formation's exit code.
    func run() throws -> Int32 {
        let width = members.map(\.name.count).max() ?? 0
        var running: [Running] = []
        defer {
            // Whatever a process left in its session (a daemon) goes with it.
            for process in running {
                kill(-process.pid, SIGKILL)
                multipack_children_remove(process.pid)
                if process.fd >= 0 { close(process.fd) }
                if process.exitDescriptor >= 0 { close(process.exitDescriptor) }
            }
        }
        for (index, member) in members.enumerated() {
            var fds: [Int32] = [-1, -1]
            guard multipack_pipe(&fds) == 0 else { throw SpawnError(executable: member.executable, errno: errno) }
            var command = Command(
                member.executable, member.arguments, in: member.directory, environment: member.environment,
                stdout: .descriptor(fds[1]), stderr: .descriptor(fds[1]))
            command.ownSession = true
            if let runAs { command.namespace = NamespacePlan(idsOf: runAs) }
            let started: Spawner.Started
            do {
                started = try Spawner.start(command)
            } catch {
                close(fds[0])
                close(fds[1])
                throw error
            }
            close(fds[1])
            // The formation stops its processes itself, SIGTERM alone as a dyno's are stopped: the
            // stop handler's own copy of the signal (a SIGINT on Ctrl-C) would be a second one.
            multipack_children_remove(started.pid)
            var prefix = member.name.padding(to: width) + " | "
            if colors { prefix = "\u{1B}[\(Self.palette[index % Self.palette.count])m" + prefix + "\u{1B}[0m" }
            running.append(Running(member: member, pid: started.pid, prefix: Array(prefix.utf8), fd: fds[0]))
        }
        return supervise(running)
    }

    private func supervise(_ running: [Running]) -> Int32 {
        var first: Running?
        var stoppedBy: Int32?
        var killAt: ContinuousClock.Instant?
        var endedAt: ContinuousClock.Instant?
        var buffer = [UInt8](repeating: 0, count: 65536)
        func stopOthers(_ reason: String) {
            let left = running.filter { $0.termination == nil }
            guard killAt == nil else { return }
            killAt = .now + grace
            guard !left.isEmpty else { return }
            notes.step(
                "\(reason): stopping \(left.map(\.member.name).joined(separator: ", ")) "
                    + "(SIGTERM, then SIGKILL after \(formatSeconds(grace.seconds)))")
            for process in left { kill(-process.pid, SIGTERM) }
        }
        while true {
            // A stop first: the processes it reached may have ended already.
            if stoppedBy == nil, let signal = stop.signal {
                stoppedBy = signal
                stopOthers("Stopped by \(signalName(signal))")
            }
            for process in running where process.termination == nil {
                var status: Int32 = 0
                let result = waitpid(process.pid, &status, WNOHANG)
                guard result == process.pid || (result < 0 && errno == ECHILD) else { continue }
                let termination: Termination =
                    status & 0x7f == 0 ? .exited((status >> 8) & 0xff) : .signaled(status & 0x7f)
                process.termination = termination
                multipack_children_remove(process.pid)
                if first == nil && killAt == nil {
                    stopOthers("\(process.member.name) ended with \(termination)")
                } else {
                    notes.detail("\(process.member.name) ended with \(termination)")
                }
                if first == nil { first = process }
            }
            if let deadline = killAt, ContinuousClock.now >= deadline {
                for process in running where process.termination == nil { kill(-process.pid, SIGKILL) }
            }
            let open = running.filter { $0.fd >= 0 }
            if running.allSatisfy({ $0.termination != nil }) {
                // A daemon a process left may hold its pipe: read on for a moment, then let go.
                let ended = endedAt ?? .now
                endedAt = ended
                if open.isEmpty || ContinuousClock.now - ended >= Spawner.drainAfterExit { break }
            }
            var polls = open.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            for process in running where process.termination == nil && process.exitDescriptor >= 0 {
                polls.append(pollfd(fd: process.exitDescriptor, events: Int16(POLLIN), revents: 0))
            }
            if stoppedBy == nil && stop.descriptor >= 0 {
                polls.append(pollfd(fd: stop.descriptor, events: Int16(POLLIN), revents: 0))
            }
            guard poll(&polls, nfds_t(polls.count), 100) > 0 else { continue }
            for (index, process) in open.enumerated() where polls[index].revents != 0 {
                let count = buffer.withUnsafeMutableBytes { read(process.fd, $0.baseAddress, $0.count) }
                if count > 0 {
                    emit(buffer[0..<count], from: process)
                } else if count == 0 || (errno != EINTR && errno != EAGAIN) {
                    finish(process)
                }
            }
        }
        for process in running where process.fd >= 0 { finish(process) }
        if let stoppedBy { return 128 + stoppedBy }
        return first?.termination?.exitCode ?? 0
    }

    /// Writes every whole line of `bytes` with the process's prefix; keeps the rest for later.
    private func emit(_ bytes: ArraySlice<UInt8>, from process: Running) {
        var out: [UInt8] = []
        var start = bytes.startIndex
        for index in bytes.indices where bytes[index] == UInt8(ascii: "\n") {
            out += process.prefix + process.partial + bytes[start...index]
            process.partial = []
            start = index + 1
        }
        process.partial += bytes[start...]
        while process.partial.count >= Self.maxLine {
            out += process.prefix + process.partial.prefix(Self.maxLine) + [UInt8(ascii: "\n")]
            process.partial.removeFirst(Self.maxLine)
        }
        if !out.isEmpty { _ = Files.writeAll(out, to: output) }
    }

    /// The process's pipe is done: what it printed last without a newline still gets one.
    private func finish(_ process: Running) {
        if !process.partial.isEmpty {
            _ = Files.writeAll(process.prefix + process.partial + [UInt8(ascii: "\n")], to: output)
            process.partial = []
        }
        close(process.fd)
        process.fd = -1
    }
}
