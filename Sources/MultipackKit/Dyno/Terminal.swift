import CMultipackSpawn
import Glibc

/// A one-off command's own terminal (SPEC §17): a pty whose slave becomes the command's
/// controlling terminal, its size following the caller's window, the caller's terminal in raw mode
/// while multipack relays between the two, and restored after, whatever happens.
struct Pty {
    var master: Int32
    var slave: Int32

    /// A new pty from this mount namespace's `/dev/ptmx`: inside a dyno's namespace its own devpts
    /// (so the caller's other terminals are never visible there), the host's without one.
    static func open() throws -> Pty {
        var master: Int32 = -1
        var slave: Int32 = -1
        let code = multipack_open_pty(&master, &slave)
        guard code == 0 else {
            throw MultipackError.build(
                "Could not make a terminal for the command: \(String(cString: strerror(code))).",
                hint: "Run it with its input from a pipe or a file (… < /dev/null) to do without one.")
        }
        return Pty(master: master, slave: slave)
    }
}

/// A terminal's size, as `stty size` shows it.
struct WindowSize: Codable, Equatable, Sendable {
    var rows: UInt16
    var columns: UInt16

    /// The size of the terminal on `fd`; nil when it is no terminal.
    static func of(_ fd: Int32) -> WindowSize? {
        var rows: UInt16 = 0
        var columns: UInt16 = 0
        guard multipack_window_size(fd, &rows, &columns) == 0 else { return nil }
        return WindowSize(rows: rows, columns: columns)
    }

    func apply(to fd: Int32) {
        _ = multipack_set_window_size(fd, rows, columns)
    }
}

/// The caller's terminal as it was: put in raw mode for the relay (every key, Ctrl-C included,
/// goes to the command's terminal, whose line discipline makes the signals), restored by `restore`.
final class RawMode: Sendable {
    private let fd: Int32
    private let saved: termios

    /// nil when `fd` is no terminal.
    init?(_ fd: Int32) {
        var attributes = termios()
        guard tcgetattr(fd, &attributes) == 0 else { return nil }
        self.fd = fd
        saved = attributes
        var raw = attributes
        cfmakeraw(&raw)
        _ = tcsetattr(fd, TCSADRAIN, &raw)
    }

    /// Puts the terminal back as it was; again is harmless.
    func restore() {
        var attributes = saved
        _ = tcsetattr(fd, TCSADRAIN, &attributes)
    }
}

/// Copies the caller's keys to a pty's master and what the command prints back, with the
/// caller's terminal in raw mode, until the pty closes (the command and everything that held its
/// terminal ended) or `finish` says so; the terminal is restored either way. A change of the
/// caller's window reaches the pty (SIGWINCH → TIOCSWINSZ). The master is given, or received
/// from the `multipack dyno` that made the pty inside the namespace.
final class TerminalRelay: Sendable {
    enum Master: Sendable {
        case given(Int32)
        case receivedOver(socket: Int32)
    }

    private let done: (read: Int32, write: Int32)
    private let thread = SerialWork()

    /// The SIGWINCH self-pipe, installed once per process.
    private static let windowChanges = multipack_winch_install()

    init(_ master: Master, input: Int32 = 0, output: Int32 = 1) {
        var fds: [Int32] = [-1, -1]
        _ = multipack_pipe(&fds)
        done = (fds[0], fds[1])
        let windowChanges = Self.windowChanges
        let finished = done.read
        thread.add {
            guard let fd = Self.wait(for: master, done: finished) else { return }
            defer { close(fd) }
            let raw = RawMode(input)
            defer { raw?.restore() }
            WindowSize.of(input)?.apply(to: fd)
            Self.relay(master: fd, input: input, output: output, windowChanges: windowChanges, done: finished)
        }
    }

    /// Waits for the relay to end: at once when the pty closed, otherwise after reading what the
    /// pty still gives for a moment (a process the command left can keep its terminal open).
    func finish() {
        var byte: UInt8 = 1
        _ = Glibc.write(done.write, &byte, 1)
        thread.finish()
        close(done.read)
        close(done.write)
    }

    private static func wait(for master: Master, done: Int32) -> Int32? {
        switch master {
        case .given(let fd):
            return fd
        case .receivedOver(let socket):
            var polls = [
                pollfd(fd: socket, events: Int16(POLLIN), revents: 0),
                pollfd(fd: done, events: Int16(POLLIN), revents: 0),
            ]
            while poll(&polls, 2, -1) < 0 && errno == EINTR {}
            guard polls[1].revents == 0 else { return nil }
            return DescriptorPassing.receive(over: socket)
        }
    }

    private static func relay(master: Int32, input: Int32, output: Int32, windowChanges: Int32, done: Int32) {
        // The relay never waits on the pty: a command that reads no keys while the user pastes
        // (its input queue full) must not keep its output, or the relay's end, waiting too.
        _ = fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK)
        var buffer = [UInt8](repeating: 0, count: 16384)
        // Keys read and not yet taken by the pty: at most one read's worth, as input is not
        // read again before they are.
        var pending: [UInt8] = []
        var inputOpen = true
        var finishing: ContinuousClock.Instant?
        while true {
            if let finishing, ContinuousClock.now - finishing >= Spawner.drainAfterExit { return }
            let writing = !pending.isEmpty && finishing == nil
            var polls = [pollfd(fd: master, events: Int16(POLLIN) | (writing ? Int16(POLLOUT) : 0), revents: 0)]
            if inputOpen && finishing == nil && pending.isEmpty {
                polls.append(pollfd(fd: input, events: Int16(POLLIN), revents: 0))
            }
            if windowChanges >= 0 { polls.append(pollfd(fd: windowChanges, events: Int16(POLLIN), revents: 0)) }
            if finishing == nil { polls.append(pollfd(fd: done, events: Int16(POLLIN), revents: 0)) }
            guard poll(&polls, nfds_t(polls.count), finishing == nil ? -1 : 50) > 0 else { continue }
            for entry in polls where entry.revents != 0 {
                switch entry.fd {
                case master:
                    if writing && entry.revents & Int16(POLLOUT) != 0 {
                        let count = pending.withUnsafeBytes { Glibc.write(master, $0.baseAddress, $0.count) }
                        if count > 0 { pending.removeFirst(count) }
                    }
                    guard entry.revents & ~Int16(POLLOUT) != 0 else { continue }
                    let count = buffer.withUnsafeMutableBytes { read(master, $0.baseAddress, $0.count) }
                    if count > 0 {
                        _ = Files.writeAll(Array(buffer[0..<count]), to: output)
                    } else if count == 0 || (errno != EINTR && errno != EAGAIN) {
                        return  // EIO: every holder of the slave closed it
                    }
                case input:
                    let count = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
                    if count > 0 {
                        pending = Array(buffer[0..<count])
                    } else if count == 0 || (errno != EINTR && errno != EAGAIN) {
                        inputOpen = false
                    }
                case windowChanges:
                    var drained = [UInt8](repeating: 0, count: 64)
                    _ = read(windowChanges, &drained, drained.count)
                    WindowSize.of(input)?.apply(to: master)
                default:
                    // The command ended: keys it never took go with it.
                    finishing = .now
                    pending = []
                }
            }
        }
    }
}

/// Descriptors between multipack's processes: the one inside a dyno's namespace makes the pty
/// there and sends its master out to the one that relays.
enum DescriptorPassing {
    static func pair() throws -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        guard multipack_socket_pair(&fds) == 0 else {
            throw MultipackError.build("Could not make a socket pair: \(String(cString: strerror(errno))).")
        }
        return (fds[0], fds[1])
    }

    static func send(_ fd: Int32, over socket: Int32) throws {
        let code = multipack_send_descriptor(socket, fd)
        guard code == 0 else {
            throw MultipackError.build("Could not hand the terminal out: \(String(cString: strerror(code))).")
        }
    }

    /// The descriptor sent, or nil when the sender ended without sending one.
    static func receive(over socket: Int32) -> Int32? {
        let fd = multipack_receive_descriptor(socket)
        return fd >= 0 ? fd : nil
    }
}
