#if canImport(Glibc)
    import Glibc
#endif

/// One file to download, and the limits that apply to it.
public struct DownloadRequest: Sendable, Equatable {
    /// An http, https or file URL. Credentials in it are used but never printed.
    public var url: String
    /// An ETag from a previous download; the server answers 304 when it still matches.
    public var ifNoneMatch: String?
    /// A Last-Modified value from a previous download, sent as If-Modified-Since.
    public var ifModifiedSince: String?
    /// The limit for the whole download, retries and waits included (`MULTIPACK_FETCH_TIMEOUT`).
    public var timeout: Duration
    /// The limit for establishing the connection.
    public var connectTimeout: Duration
    /// How many times a transient failure is retried.
    public var maxRetries: Int
    /// A transfer that receives nothing for this long is abandoned as stalled (a transient
    /// failure), long before the overall timeout would end it.
    public var stallWindow: Duration
    /// A body larger than this is stopped and refused (`MULTIPACK_MAX_DOWNLOAD`).
    public var maxBytes: Int64?
    /// An archive is expected: an HTML page (a login or captive-portal page) is refused as such.
    public var expectsArchive: Bool
    /// GET, or HEAD for the headers alone.
    public var method: Method
    /// More request headers, `Name: value` each (`Accept`, `Authorization`). Never printed.
    public var headers: [String]
    /// Whether libcurl follows redirects. A client that must choose what each hop is sent (the
    /// registry's token never goes to a CDN) follows them itself, with `answeredStatuses`.
    public var followsRedirects: Bool
    /// Statuses that come back as an `HTTPResponse`, with their headers, instead of failing the
    /// request: a registry answers 401 and 307 on purpose. Others ≥ 400 fail as before.
    public var answeredStatuses: Set<Int>
    /// Whether a host that cannot be reached at all (its name unknown, the connection refused)
    /// is tried again like any transient failure. A caller with somewhere else to go (a build
    /// that falls back to this machine offline) asks once.
    public var retriesUnreachable = true

    public enum Method: String, Sendable, Equatable {
        case get = "GET", head = "HEAD"
    }

    public init(
        url: String,
        ifNoneMatch: String? = nil,
        ifModifiedSince: String? = nil,
        timeout: Duration = .seconds(300),
        connectTimeout: Duration = .seconds(10),
        maxRetries: Int = 3,
        stallWindow: Duration = .seconds(30),
        maxBytes: Int64? = nil,
        expectsArchive: Bool = false,
        method: Method = .get,
        headers: [String] = [],
        followsRedirects: Bool = true,
        answeredStatuses: Set<Int> = []
    ) {
        self.url = url
        self.ifNoneMatch = ifNoneMatch
        self.ifModifiedSince = ifModifiedSince
        self.timeout = timeout
        self.connectTimeout = connectTimeout
        self.maxRetries = maxRetries
        self.stallWindow = stallWindow
        self.maxBytes = maxBytes
        self.expectsArchive = expectsArchive
        self.method = method
        self.headers = headers
        self.followsRedirects = followsRedirects
        self.answeredStatuses = answeredStatuses
    }
}

/// One response header as the server sent it (the name in lower case).
public struct HTTPHeader: Sendable, Equatable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name.lowercased()
        self.value = value
    }
}

/// A whole response: what `HTTPClient.send` returns.
public struct HTTPResponse: Sendable, Equatable {
    /// The status of the last response (0 for a file URL).
    public var status: Int
    /// The last response's headers, in the order they came.
    public var headers: [HTTPHeader]
    /// The body, when it was kept in memory; for a response that went to a file, the start of a
    /// body that was not a success (an error's text), else nothing.
    public var body: [UInt8]
    /// The body's size, wherever it went.
    public var bytes: Int64
    /// Where the last redirect led; not masked, so mask it before printing it.
    public var effectiveURL: String

    public init(status: Int, headers: [HTTPHeader], body: [UInt8], bytes: Int64, effectiveURL: String) {
        self.status = status
        self.headers = headers
        self.body = body
        self.bytes = bytes
        self.effectiveURL = effectiveURL
    }

    /// The first value of a header, by its name in any case.
    public func header(_ name: String) -> String? {
        let name = name.lowercased()
        return headers.first { $0.name == name }?.value
    }

    /// Every value of a header that may repeat (`WWW-Authenticate`).
    public func headers(named name: String) -> [String] {
        let name = name.lowercased()
        return headers.filter { $0.name == name }.map(\.value)
    }
}

/// What a download produced.
public enum DownloadResult: Sendable, Equatable {
    /// The server confirmed that the copy named by the conditional headers is current (HTTP 304).
    /// Nothing was written.
    case notModified
    /// The body is in the destination file. `effectiveURL` is where the last redirect led; it is
    /// not masked, so mask it before printing it.
    case downloaded(bytes: Int64, etag: String?, lastModified: String?, effectiveURL: String)
}

/// Downloads a URL to a file (production: `HTTPClient`, over libcurl).
public protocol HTTPDownloading: Sendable {
    /// Downloads `request.url` into the file at `path`, replacing it. The caller passes a temporary
    /// name and renames it on success; on any failure, and on `.notModified`, nothing is left at
    /// `path`. A stop requested through `stop`, or `isCancelled` (the build no longer needs it),
    /// abandons the download.
    ///
    /// - Throws: `HTTPError`, with the URL masked.
    func download(
        _ request: DownloadRequest, to path: String, stop: StopToken, isCancelled: @escaping @Sendable () -> Bool,
        progress: (@Sendable (DownloadProgress) -> Void)?, notice: (@Sendable (String) -> Void)?
    ) throws -> DownloadResult
}

extension HTTPDownloading {
    /// A download this process's stop signals abandon.
    public func download(
        _ request: DownloadRequest, to path: String, progress: (@Sendable (DownloadProgress) -> Void)?,
        notice: (@Sendable (String) -> Void)? = nil
    ) throws -> DownloadResult {
        try download(request, to: path, stop: .signals, isCancelled: { false }, progress: progress, notice: notice)
    }
}

/// Downloads files through libcurl (loaded on first use), streaming them to disk, with redirects,
/// time limits and retries with exponential backoff (SPEC §5).
public struct HTTPClient: HTTPDownloading {
    /// The wait before the first retry; each further retry waits twice as long.
    public var backoffBase: Duration
    /// The longest wait between two attempts.
    public var maxBackoff: Duration
    /// How often a running download reports progress, after the first report.
    public var progressInterval: Duration
    /// When a download that is still running reports progress the first time (SPEC §9).
    public var firstProgress: Duration
    /// The deadline, stalls, progress reports and the waits between attempts are on this clock.
    public var clock: any BuildClock
    /// multipack was asked to stop: what `send` sends is abandoned, and so are the waits.
    public var stop: StopToken = .signals
    /// Whether what `send` sends is no longer needed (another layer's download failed).
    public var isCancelled: @Sendable () -> Bool = { false }

    public init(
        backoffBase: Duration = .seconds(2),
        maxBackoff: Duration = .seconds(30),
        progressInterval: Duration = .seconds(5),
        firstProgress: Duration = .seconds(1),
        clock: any BuildClock = SystemClock()
    ) {
        self.backoffBase = backoffBase
        self.maxBackoff = maxBackoff
        self.progressInterval = progressInterval
        self.firstProgress = firstProgress
        self.clock = clock
    }

    public func download(
        _ request: DownloadRequest, to path: String, stop: StopToken, isCancelled: @escaping @Sendable () -> Bool,
        progress: (@Sendable (DownloadProgress) -> Void)?, notice: (@Sendable (String) -> Void)?
    ) throws -> DownloadResult {
        let response = try perform(
            request, bodyTo: path, stop: stop, isCancelled: isCancelled, progress: progress, notice: notice)
        if response.status == 304 {
            unlink(path)
            return .notModified
        }
        return .downloaded(
            bytes: response.bytes, etag: response.header("etag"), lastModified: response.header("last-modified"),
            effectiveURL: response.effectiveURL)
    }

    /// Sends one request and returns the whole response, with the same limits, retries and
    /// deadline as `download`. The body goes to the file at `path` (replaced; on failure nothing
    /// is left there) or, without one, to memory, up to `request.maxBytes` (1 MiB unless set). A
    /// status in `request.answeredStatuses` comes back as a response rather than an error.
    ///
    /// - Throws: `HTTPError`, with the URL masked.
    public func send(
        _ request: DownloadRequest,
        bodyTo path: String? = nil,
        progress: (@Sendable (DownloadProgress) -> Void)? = nil,
        notice: (@Sendable (String) -> Void)? = nil
    ) throws -> HTTPResponse {
        var request = request
        if path == nil, request.maxBytes == nil { request.maxBytes = 1 << 20 }
        return try perform(
            request, bodyTo: path, stop: stop, isCancelled: isCancelled, progress: progress, notice: notice)
    }

    /// The attempts of one request: retried with backoff on transient failures, within the
    /// request's deadline.
    private func perform(
        _ request: DownloadRequest,
        bodyTo path: String?,
        stop: StopToken,
        isCancelled: @escaping @Sendable () -> Bool,
        progress: (@Sendable (DownloadProgress) -> Void)?,
        notice: (@Sendable (String) -> Void)?
    ) throws -> HTTPResponse {
        let library: CurlLibrary
        switch CurlLibrary.shared {
        case .success(let loaded): library = loaded
        case .failure(let reason):
            throw HTTPError(kind: .libraryUnavailable, url: request.url, detail: reason.message, attempts: 0)
        }
        let shouldStop: @Sendable () -> Bool = { stop.isRequested || isCancelled() }
        let discard = { if let path { unlink(path) } }
        let deadline = clock.now + request.timeout
        let attempts = request.maxRetries + 1
        var attempt = 0
        while true {
            attempt += 1
            let outcome = CurlTransfer(
                library: library,
                request: request,
                path: path,
                progressInterval: progressInterval,
                firstProgress: firstProgress,
                clock: clock,
                deadline: deadline,
                shouldStop: shouldStop,
                progress: progress
            ).run()
            switch outcome {
            case .success(let response):
                return response
            case .failure(let failure):
                let error = HTTPError(kind: failure.kind, url: request.url, detail: failure.detail, attempts: attempt)
                let delay = backoff(beforeRetry: attempt)
                // No retry that the deadline would cut short anyway.
                guard error.isTransient, request.retriesUnreachable || !error.isUnreachable, attempt < attempts,
                    clock.now + delay < deadline, !shouldStop()
                else {
                    discard()
                    throw error
                }
                notice?(
                    "\(Masking.url(request.url)): retrying in \(Self.describe(delay)) after \(error.shortReason) "
                        + "(attempt \(attempt + 1) of \(attempts))")
                clock.sleep(delay, stop: stop)
                if shouldStop() {
                    discard()
                    throw HTTPError(kind: .stopped, url: request.url, attempts: attempt)
                }
            }
        }
    }

    private static func describe(_ delay: Duration) -> String {
        let milliseconds = Int(delay.seconds * 1000)
        return milliseconds % 1000 == 0 ? "\(milliseconds / 1000) s" : "\(milliseconds) ms"
    }

    /// The wait before retry number `retry` (1-based): base, 2 × base, 4 × base, … up to the cap.
    public func backoff(beforeRetry retry: Int) -> Duration {
        var delay = backoffBase
        for _ in 1..<max(1, retry) {
            delay *= 2
            if delay >= maxBackoff { return maxBackoff }
        }
        return min(delay, maxBackoff)
    }
}
