import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A small HTTP/1.1 server for the tests, bound to 127.0.0.1 on an ephemeral port. Each path has
/// a scripted behaviour; every request is recorded. One thread accepts, one thread serves each
/// connection, and every response ends with `Connection: close`. Call `stop()` when done.
final class LoopbackHTTPServer: Sendable {
    indirect enum Behaviour: Sendable {
        /// 200 with the body, or 304 when If-None-Match or If-Modified-Since matches.
        case serve(body: [UInt8], etag: String? = nil, lastModified: String? = nil)
        /// This status with a short text body.
        case status(Int)
        /// A redirect to a path or an absolute URL.
        case redirect(to: String, status: Int = 302)
        /// Announces the whole body, sends the first `after` bytes, then closes the connection.
        case dropMidBody(body: [UInt8], after: Int)
        /// Announces the whole body, sends the first `after` bytes, then sends nothing more until
        /// the client gives up.
        case stall(body: [UInt8], after: Int)
        /// Sends the body in chunks with a pause between them.
        case trickle(body: [UInt8], chunk: Int, pause: Duration)
        /// The n-th request gets the n-th behaviour; the last one repeats.
        case sequence([Behaviour])
        /// Waits, then behaves as told.
        case delayed(Duration, Behaviour)
        /// This status, these headers and this body.
        case reply(status: Int, headers: [(String, String)] = [], body: [UInt8] = [])
        /// Decides from the request (its headers, its query), then behaves as told: a registry
        /// that checks a token, a CDN that checks a signature.
        case handler(@Sendable (Request) -> Behaviour)
    }

    struct Request: Sendable {
        var method: String
        /// The request target, query included.
        var target: String
        /// Header names in lower case.
        var headers: [String: String]
    }

    private struct State: ~Copyable {
        var requests: [String: [Request]] = [:]
        var openConnections: Set<Int32> = []
        var threads: [pthread_t] = []
        var stopping = false
        var stopped = false
    }

    let port: UInt16
    private let listener: Int32
    private let routes: [String: Behaviour]
    /// URL prefix → directory: files under it are read when asked for, so a test can change them
    /// between requests (a git repository served over dumb HTTP, an archive replaced upstream).
    private let mounts: [String: String]
    /// With a value, every request without this `Authorization` header gets 401 (Basic).
    private let authorization: String?
    private let state = Mutex(State())

    init(routes: [String: Behaviour], mounts: [String: String] = [:], authorization: String? = nil) throws {
        self.routes = routes
        self.mounts = mounts
        self.authorization = authorization
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ServerError.socket(errno) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr = in_addr(s_addr: UInt32(0x7f00_0001).bigEndian)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            close(fd)
            throw ServerError.socket(errno)
        }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.listener = fd
        self.port = UInt16(bigEndian: address.sin_port)
        let thread = Self.spawn { [self] in acceptLoop() }
        state.withLock { $0.threads.append(thread) }
    }

    enum ServerError: Error {
        case socket(Int32)
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    func url(_ path: String) -> String {
        "http://127.0.0.1:\(port)\(path)"
    }

    func requests(_ path: String) -> [Request] {
        state.withLock { $0.requests[path] ?? [] }
    }

    func requestCount(_ path: String) -> Int {
        requests(path).count
    }

    /// Every request so far, whatever its path.
    var totalRequests: Int {
        state.withLock { $0.requests.values.reduce(0) { $0 + $1.count } }
    }

    /// Stops accepting, cuts every open connection and waits for all threads.
    func stop() {
        let alreadyStopped = state.withLock { state in
            defer { state.stopping = true }
            for connection in state.openConnections {
                shutdown(connection, Int32(SHUT_RDWR))
            }
            return state.stopping
        }
        guard !alreadyStopped else { return }
        // Connection threads may still be registering; join until none is left.
        while let thread = state.withLock({ $0.threads.popLast() }) {
            pthread_join(thread, nil)
            state.withLock { state in
                for connection in state.openConnections {
                    shutdown(connection, Int32(SHUT_RDWR))
                }
            }
        }
        close(listener)
    }

    private var isStopping: Bool {
        state.withLock { $0.stopping }
    }

    private func acceptLoop() {
        while !isStopping {
            var poller = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 20) > 0 else { continue }
            let connection = accept(listener, nil, nil)
            guard connection >= 0 else { continue }
            let registered = state.withLock { state in
                guard !state.stopping else { return false }
                state.openConnections.insert(connection)
                state.threads.append(Self.spawn { [self] in serve(connection) })
                return true
            }
            if !registered {
                close(connection)
            }
        }
    }

    private func serve(_ connection: Int32) {
        defer {
            state.withLock { state in
                state.openConnections.remove(connection)
                close(connection)
            }
        }
        guard let request = readRequest(connection) else { return }
        let path = String(request.target.prefix { $0 != "?" })
        let index = state.withLock { state in
            state.requests[path, default: []].append(request)
            return state.requests[path]!.count - 1
        }
        if let authorization, request.headers["authorization"] != authorization {
            respond(
                connection, status: 401, headers: [("WWW-Authenticate", "Basic realm=\"test\"")],
                body: Array("authentication required\n".utf8))
            return
        }
        guard var behaviour = routes[path] ?? mounted(path) else {
            respond(connection, status: 404, headers: [], body: Array("no route\n".utf8))
            return
        }
        while true {
            if case .sequence(let steps) = behaviour {
                behaviour = steps[min(index, steps.count - 1)]
            } else if case .delayed(let pause, let next) = behaviour {
                Self.sleep(pause)
                behaviour = next
            } else if case .handler(let decide) = behaviour {
                behaviour = decide(request)
            } else {
                break
            }
        }
        switch behaviour {
        case .serve(let body, let etag, let lastModified):
            var headers: [(String, String)] = []
            if let etag { headers.append(("ETag", etag)) }
            if let lastModified { headers.append(("Last-Modified", lastModified)) }
            let fresh =
                (etag != nil && request.headers["if-none-match"] == etag)
                || (lastModified != nil && request.headers["if-modified-since"] == lastModified)
            if fresh {
                sendHead(connection, status: 304, headers: headers, contentLength: nil)
            } else {
                respond(connection, status: 200, headers: headers, body: body)
            }
        case .status(let code):
            respond(connection, status: code, headers: [], body: Array("status \(code)\n".utf8))
        case .redirect(let location, let code):
            respond(connection, status: code, headers: [("Location", location)], body: [])
        case .dropMidBody(let body, let after):
            sendHead(connection, status: 200, headers: [], contentLength: body.count)
            send(connection, Array(body.prefix(after)))
        case .stall(let body, let after):
            sendHead(connection, status: 200, headers: [], contentLength: body.count)
            send(connection, Array(body.prefix(after)))
            waitForClientToLeave(connection)
        case .trickle(let body, let chunk, let pause):
            sendHead(connection, status: 200, headers: [], contentLength: body.count)
            var offset = 0
            while offset < body.count, !isStopping {
                if offset > 0 { Self.sleep(pause) }
                let end = min(body.count, offset + chunk)
                send(connection, Array(body[offset..<end]))
                offset = end
            }
        case .reply(let status, let headers, let body):
            if request.method == "HEAD" {
                sendHead(connection, status: status, headers: headers, contentLength: body.count)
            } else {
                respond(connection, status: status, headers: headers, body: body)
            }
        case .sequence, .delayed, .handler:
            break
        }
    }

    /// The file a mount holds at `path`, read now.
    private func mounted(_ path: String) -> Behaviour? {
        for (prefix, directory) in mounts where path.hasPrefix(prefix) {
            let relative = path.dropFirst(prefix.count)
            guard !relative.split(separator: "/").contains("..") else { return nil }
            let descriptor = open(directory + "/" + relative, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { return nil }
            defer { close(descriptor) }
            var info = stat()
            guard fstat(descriptor, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
            var bytes: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { break }
                bytes += buffer[..<count]
            }
            return .serve(body: bytes)
        }
        return nil
    }

    private func readRequest(_ connection: Int32) -> Request? {
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        let terminator: [UInt8] = Array("\r\n\r\n".utf8)
        while data.firstRange(of: terminator) == nil {
            var poller = pollfd(fd: connection, events: Int16(POLLIN), revents: 0)
            if poll(&poller, 1, 50) == 0 {
                if isStopping { return nil }
                continue
            }
            let count = buffer.withUnsafeMutableBytes { recv(connection, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return nil }
            data += buffer[..<count]
        }
        let head = String(decoding: data, as: UTF8.self)
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)[...]
        let requestLine = lines.popFirst()?.split(separator: " ") ?? []
        guard requestLine.count >= 2 else { return nil }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let value = line[line.index(after: colon)...].drop(while: { $0 == " " })
            headers[line[..<colon].lowercased()] = String(value)
        }
        return Request(method: String(requestLine[0]), target: String(requestLine[1]), headers: headers)
    }

    private func respond(
        _ connection: Int32,
        status: Int,
        headers: [(String, String)],
        body: [UInt8]
    ) {
        sendHead(connection, status: status, headers: headers, contentLength: body.count)
        send(connection, body)
    }

    private func sendHead(_ connection: Int32, status: Int, headers: [(String, String)], contentLength: Int?) {
        var head = "HTTP/1.1 \(status) \(Self.reason(status))\r\nConnection: close\r\n"
        if let contentLength { head += "Content-Length: \(contentLength)\r\n" }
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        send(connection, Array((head + "\r\n").utf8))
    }

    private func send(_ connection: Int32, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let sent = Glibc.send(connection, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                if sent < 0 && errno == EINTR { continue }
                guard sent > 0 else { return }
                offset += sent
            }
        }
    }

    private func waitForClientToLeave(_ connection: Int32) {
        var scratch = [UInt8](repeating: 0, count: 512)
        while !isStopping {
            var poller = pollfd(fd: connection, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 20) > 0 else { continue }
            let count = scratch.withUnsafeMutableBytes { recv(connection, $0.baseAddress, $0.count, 0) }
            if count <= 0 { return }
        }
    }

    private static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 301: "Moved Permanently"
        case 302: "Found"
        case 304: "Not Modified"
        case 307: "Temporary Redirect"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 429: "Too Many Requests"
        case 404: "Not Found"
        case 500: "Internal Server Error"
        case 503: "Service Unavailable"
        default: "Status"
        }
    }

    private static func sleep(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
        _ = nanosleep(&request, nil)
    }

    private final class ThreadBody {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    private static func spawn(_ body: @escaping @Sendable () -> Void) -> pthread_t {
        let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(
            &thread, nil,
            { context in
                Unmanaged<ThreadBody>.fromOpaque(context!).takeRetainedValue().run()
                return nil
            }, context)
        precondition(result == 0, "pthread_create failed: \(result)")
        return thread
    }
}
