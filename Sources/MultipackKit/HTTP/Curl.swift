import CMultipackCurl

#if canImport(Glibc)
    import Glibc
#endif

/// Why libcurl could not be loaded.
struct CurlLoadFailure: Error, Sendable {
    let message: String
}

/// libcurl's entry points, loaded with dlopen on the first download.
struct CurlLibrary: @unchecked Sendable {
    // Filled once by the loader and never changed, so sharing it between threads is safe.
    fileprivate let api: UnsafePointer<multipack_curl>

    /// The process-wide library. A static `let` is initialised once, thread-safely, on first use:
    /// that is where libcurl is loaded and `curl_global_init` (not thread-safe) runs.
    static let shared: Result<CurlLibrary, CurlLoadFailure> = {
        open(soname: "libcurl.so.4").flatMap { library in
            let code = multipack_curl_global_init(library.api)
            guard code == CURLE_OK else {
                return .failure(CurlLoadFailure(message: "curl_global_init failed with code \(code.rawValue)"))
            }
            return .success(library)
        }
    }()

    /// Loads a libcurl without initialising it.
    static func open(soname: String) -> Result<CurlLibrary, CurlLoadFailure> {
        let capacity = 512
        let error = UnsafeMutablePointer<CChar>.allocate(capacity: capacity)
        defer { error.deallocate() }
        error.initialize(repeating: 0, count: capacity)
        guard let api = multipack_curl_load(soname, error, capacity) else {
            return .failure(CurlLoadFailure(message: String(cString: error)))
        }
        return .success(CurlLibrary(api: api))
    }
}

/// Why one attempt failed, before the URL and the attempt count are added.
struct TransferFailure: Error {
    let kind: HTTPError.Kind
    var detail: String? = nil
}

/// One attempt at one request: an easy handle, the destination (a file, or memory), and the state
/// the libcurl callbacks update. The callbacks find this object through `Unmanaged`.
final class CurlTransfer {
    private let api: UnsafePointer<multipack_curl>
    private let request: DownloadRequest
    /// The file the body goes to; nil keeps it in memory.
    private let path: String?
    private let progressInterval: Duration
    private let firstProgress: Duration
    private let progress: (@Sendable (DownloadProgress) -> Void)?
    private let clock: any BuildClock
    private let deadline: Duration
    private let shouldStop: @Sendable () -> Bool

    private var file: Int32 = -1
    /// Bytes of a success body, wherever they went.
    private var received: Int64 = 0
    /// Bytes of any body, for the stall check.
    private var seen: Int64 = 0
    private var writeErrno: Int32 = 0
    /// The current response's status (from its status line) and headers.
    private var status = 0
    private var responseHeaders: [HTTPHeader] = []
    /// A success body kept in memory, or the start of any other body.
    private var memory: [UInt8] = []
    private let started: Duration
    private var nextReport: Duration
    private var lastByte: Duration
    private var receivedAtLastCheck: Int64 = 0
    /// Why a callback ended the transfer, when one did.
    private var abort: TransferAbort?
    /// The first bytes of the body, to tell an HTML page from an archive.
    private var head: [UInt8] = []

    enum TransferAbort {
        case stopped, deadline, stalled, tooLarge(announced: Int64?)
    }

    init(
        library: CurlLibrary,
        request: DownloadRequest,
        path: String?,
        progressInterval: Duration,
        firstProgress: Duration,
        clock: any BuildClock,
        deadline: Duration,
        shouldStop: @escaping @Sendable () -> Bool,
        progress: (@Sendable (DownloadProgress) -> Void)?
    ) {
        self.api = library.api
        self.request = request
        self.path = path
        self.progressInterval = progressInterval
        self.firstProgress = firstProgress
        self.clock = clock
        self.deadline = deadline
        self.shouldStop = shouldStop
        self.progress = progress
        let now = clock.now
        self.started = now
        self.nextReport = now + firstProgress
        self.lastByte = now
    }

    func run() -> Result<HTTPResponse, TransferFailure> {
        if let path {
            file = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard file >= 0 else {
                return .failure(
                    TransferFailure(kind: .fileSystem("cannot create \(path): \(Self.describe(errno: errno))")))
            }
        }
        defer { if file >= 0 { close(file) } }
        guard let handle = multipack_curl_easy_init(api) else {
            return .failure(TransferFailure(kind: .network(code: Int(CURLE_FAILED_INIT.rawValue), message: "")))
        }
        defer { multipack_curl_easy_cleanup(api, handle) }
        var headers: UnsafeMutablePointer<curl_slist>?
        defer { multipack_curl_slist_free_all(api, headers) }
        if let etag = request.ifNoneMatch {
            headers = multipack_curl_slist_append(api, headers, "If-None-Match: \(etag)")
        }
        if let date = request.ifModifiedSince {
            headers = multipack_curl_slist_append(api, headers, "If-Modified-Since: \(date)")
        }
        for header in request.headers {
            headers = multipack_curl_slist_append(api, headers, header)
        }
        let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE))
        defer { errorBuffer.deallocate() }
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE))

        return withExtendedLifetime(self) {
            do throws(TransferFailure) {
                try configure(handle, headers: headers, errorBuffer: errorBuffer)
            } catch {
                return .failure(error)
            }
            let code = multipack_curl_easy_perform(api, handle)
            let message = errorBuffer[0] != 0 ? String(cString: errorBuffer) : ""
            return outcome(of: code, handle: handle, message: message)
        }
    }

    private func configure(
        _ handle: UnsafeMutableRawPointer,
        headers: UnsafeMutablePointer<curl_slist>?,
        errorBuffer: UnsafeMutablePointer<CChar>
    ) throws(TransferFailure) {
        let owner = Unmanaged.passUnretained(self).toOpaque()
        func check(_ code: CURLcode) throws(TransferFailure) {
            guard code == CURLE_OK else {
                let message = String(cString: multipack_curl_easy_strerror(api, code))
                throw TransferFailure(kind: .network(code: Int(code.rawValue), message: message))
            }
        }
        try check(multipack_curl_setopt_pointer(api, handle, CURLOPT_ERRORBUFFER, errorBuffer))
        try check(multipack_curl_setopt_string(api, handle, CURLOPT_URL, request.url))
        try check(multipack_curl_restrict_protocols(api, handle))
        // Timeouts must not use SIGALRM: downloads run on several threads at once.
        try check(multipack_curl_setopt_long(api, handle, CURLOPT_NOSIGNAL, 1))
        try check(multipack_curl_setopt_long(api, handle, CURLOPT_FOLLOWLOCATION, request.followsRedirects ? 1 : 0))
        try check(multipack_curl_setopt_long(api, handle, CURLOPT_MAXREDIRS, 10))
        // The caller reads the statuses it answers itself, headers and all.
        try check(
            multipack_curl_setopt_long(api, handle, CURLOPT_FAILONERROR, request.answeredStatuses.isEmpty ? 1 : 0))
        if request.method == .head {
            try check(multipack_curl_setopt_long(api, handle, CURLOPT_NOBODY, 1))
        }
        try check(multipack_curl_setopt_string(api, handle, CURLOPT_USERAGENT, "multipack"))
        try check(multipack_curl_setopt_long(api, handle, CURLOPT_BUFFERSIZE, 128 * 1024))
        // The deadline covers the retries too: each attempt gets what is left of it.
        let left = max(1, Self.milliseconds(deadline - clock.now))
        try check(multipack_curl_setopt_long(api, handle, CURLOPT_TIMEOUT_MS, left))
        try check(
            multipack_curl_setopt_long(
                api, handle, CURLOPT_CONNECTTIMEOUT_MS, max(1, Self.milliseconds(request.connectTimeout))))
        if let headers {
            try check(multipack_curl_setopt_pointer(api, handle, CURLOPT_HTTPHEADER, headers))
        }
        try check(
            multipack_curl_setopt_data_callback(api, handle, CURLOPT_WRITEFUNCTION) { data, size, count, owner in
                guard let data, let owner else { return 0 }
                let transfer = Unmanaged<CurlTransfer>.fromOpaque(owner).takeUnretainedValue()
                return transfer.write(UnsafeRawBufferPointer(start: data, count: size * count))
            })
        try check(multipack_curl_setopt_pointer(api, handle, CURLOPT_WRITEDATA, owner))
        try check(
            multipack_curl_setopt_data_callback(api, handle, CURLOPT_HEADERFUNCTION) { data, size, count, owner in
                guard let data, let owner else { return 0 }
                let transfer = Unmanaged<CurlTransfer>.fromOpaque(owner).takeUnretainedValue()
                transfer.header(UnsafeRawBufferPointer(start: data, count: size * count))
                return size * count
            })
        try check(multipack_curl_setopt_pointer(api, handle, CURLOPT_HEADERDATA, owner))
        // Called about once a second even when nothing arrives: where a stop signal, a cancelled
        // build, the deadline, a stall and the size limit end the transfer (SPEC §5, §11).
        try check(
            multipack_curl_setopt_xferinfo_callback(api, handle) { owner, total, _, _, _ in
                guard let owner else { return 0 }
                return Unmanaged<CurlTransfer>.fromOpaque(owner).takeUnretainedValue().tick(total: total) ? 0 : 1
            })
        try check(multipack_curl_setopt_pointer(api, handle, CURLOPT_XFERINFODATA, owner))
        try check(multipack_curl_setopt_long(api, handle, CURLOPT_NOPROGRESS, 0))
    }

    private func outcome(
        of code: CURLcode,
        handle: UnsafeMutableRawPointer,
        message: String
    ) -> Result<HTTPResponse, TransferFailure> {
        var status = 0
        _ = multipack_curl_getinfo_long(api, handle, CURLINFO_RESPONSE_CODE, &status)
        var length: curl_off_t = -1
        _ = multipack_curl_getinfo_offset(api, handle, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length)
        let announced = Int64(length)
        let sizes = announced >= 0 ? "received \(received) of \(announced) bytes" : "received \(received) bytes"

        if let abort {
            switch abort {
            case .stopped:
                return .failure(TransferFailure(kind: .stopped))
            case .deadline:
                return .failure(
                    TransferFailure(
                        kind: .timeout,
                        detail: "the download did not finish within \(Self.describe(request.timeout)) (\(sizes))"))
            case .stalled:
                return .failure(
                    TransferFailure(
                        kind: .timeout,
                        detail: "no data arrived for \(Self.describe(request.stallWindow)) (\(sizes))"))
            case .tooLarge(let announced):
                return .failure(TransferFailure(kind: .tooLarge(limit: request.maxBytes ?? 0, announced: announced)))
            }
        }
        switch code {
        case CURLE_OK:
            var effective: UnsafePointer<CChar>?
            _ = multipack_curl_getinfo_string(api, handle, CURLINFO_EFFECTIVE_URL, &effective)
            let response = HTTPResponse(
                status: status, headers: responseHeaders, body: memory, bytes: Self.isSuccess(status) ? received : seen,
                effectiveURL: effective.map { String(cString: $0) } ?? request.url)
            if status == 304 || request.answeredStatuses.contains(status) {
                return .success(response)
            }
            guard Self.isSuccess(status) else {
                return .failure(TransferFailure(kind: .status(status)))
            }
            if request.expectsArchive, let page = HTMLPage(head: head, contentType: response.header("content-type")) {
                return .failure(TransferFailure(kind: .html(status: status, title: page.title)))
            }
            if request.method == .get && announced >= 0 && announced != received {
                return .failure(TransferFailure(kind: .truncated, detail: sizes))
            }
            return .success(response)
        case CURLE_HTTP_RETURNED_ERROR:
            return .failure(TransferFailure(kind: .status(status)))
        case CURLE_PARTIAL_FILE:
            return .failure(TransferFailure(kind: .truncated, detail: sizes))
        case CURLE_OPERATION_TIMEDOUT:
            var connectTime: curl_off_t = 0
            _ = multipack_curl_getinfo_offset(api, handle, CURLINFO_CONNECT_TIME_T, &connectTime)
            let detail: String
            if connectTime == 0 && status == 0 {
                detail = "no connection within \(Self.describe(request.connectTimeout))"
            } else {
                detail = "the download did not finish within \(Self.describe(request.timeout)) (\(sizes))"
            }
            return .failure(TransferFailure(kind: .timeout, detail: detail))
        case CURLE_WRITE_ERROR where writeErrno != 0:
            return .failure(
                TransferFailure(
                    kind: .fileSystem("writing \(path ?? "memory") failed: \(Self.describe(errno: writeErrno))")))
        default:
            let text = message.isEmpty ? String(cString: multipack_curl_easy_strerror(api, code)) : message
            return .failure(TransferFailure(kind: .network(code: Int(code.rawValue), message: Masking.text(text))))
        }
    }

    /// file:// transfers have no status.
    private static func isSuccess(_ status: Int) -> Bool { status == 0 || (200..<300).contains(status) }

    private func write(_ bytes: UnsafeRawBufferPointer) -> Int {
        seen += Int64(bytes.count)
        // The body of a status the caller answers (an error's JSON, a redirect's page) is kept
        // in part, to be read, and never written where the success body goes.
        guard Self.isSuccess(status) else {
            memory.append(contentsOf: bytes.prefix(max(0, Self.headSize - memory.count)))
            return bytes.count
        }
        if let limit = request.maxBytes, received + Int64(bytes.count) > limit {
            abort = .tooLarge(announced: nil)
            return 0
        }
        if head.count < Self.headSize {
            head.append(contentsOf: bytes.prefix(Self.headSize - head.count))
        }
        guard file >= 0 else {
            memory.append(contentsOf: bytes)
            received += Int64(bytes.count)
            return bytes.count
        }
        var rest = bytes
        while let base = rest.baseAddress, !rest.isEmpty {
            let written = Glibc.write(file, base, rest.count)
            if written < 0 {
                if errno == EINTR { continue }
                writeErrno = errno
                return 0
            }
            rest = UnsafeRawBufferPointer(rebasing: rest[written...])
        }
        received += Int64(bytes.count)
        return bytes.count
    }

    /// Keeps the status and headers of the final response: a status line starts a new response
    /// (a redirect, a 100 Continue), so it forgets those of the previous one.
    private func header(_ bytes: UnsafeRawBufferPointer) {
        let line = String(decoding: bytes, as: UTF8.self)
        if line.hasPrefix("HTTP/") {
            responseHeaders = []
            memory = []
            status = line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
            return
        }
        // A hostile server must not grow this without bound.
        guard responseHeaders.count < 256, let colon = line.firstIndex(of: ":") else { return }
        let value = String(line[line.index(after: colon)...].trimming(while: \.isWhitespace))
        responseHeaders.append(HTTPHeader(name: String(line[..<colon]), value: value))
    }

    /// The periodic check; false ends the transfer.
    private func tick(total: curl_off_t) -> Bool {
        let now = clock.now
        if shouldStop() {
            abort = .stopped
            return false
        }
        if now >= deadline {
            abort = .deadline
            return false
        }
        if let limit = request.maxBytes, total > limit {
            abort = .tooLarge(announced: Int64(total))
            return false
        }
        if seen != receivedAtLastCheck {
            receivedAtLastCheck = seen
            lastByte = now
        } else if now - lastByte >= request.stallWindow {
            abort = .stalled
            return false
        }
        if let progress, now >= nextReport {
            nextReport = now + progressInterval
            let seconds = (now - started).seconds
            progress(
                DownloadProgress(
                    url: request.url, bytes: received, total: total > 0 ? Int64(total) : nil,
                    bytesPerSecond: seconds > 0 ? Double(received) / seconds : 0))
        }
        return true
    }

    /// How much of the body is kept to recognise an HTML page and read its title.
    static let headSize = 16384

    private static func milliseconds(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        return Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
    }

    private static func describe(_ duration: Duration) -> String {
        let ms = milliseconds(duration)
        if ms % 1000 != 0 { return "\(ms) ms" }
        return ms == 1000 ? "1 second" : "\(ms / 1000) seconds"
    }

    private static func describe(errno code: Int32) -> String {
        strerror(code).map { String(cString: $0) } ?? "error \(code)"
    }
}

extension Substring {
    fileprivate func trimming(while predicate: (Character) -> Bool) -> Substring {
        var result = self
        while let first = result.first, predicate(first) { result = result.dropFirst() }
        while let last = result.last, predicate(last) { result = result.dropLast() }
        return result
    }
}
