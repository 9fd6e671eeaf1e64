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

    public init(
        url: String,
        ifNoneMatch: String? = nil,
        ifModifiedSince: String? = nil,
        timeout: Duration = .seconds(300),
        connectTimeout: Duration = .seconds(10),
        maxRetries: Int = 3,
        stallWindow: Duration = .seconds(30),
        maxBytes: Int64? = nil,
        expectsArchive: Bool = false
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
        let library: CurlLibrary
        switch CurlLibrary.shared {
        case .success(let loaded): library = loaded
        case .failure(let reason):
            throw HTTPError(kind: .libraryUnavailable, url: request.url, detail: reason.message, attempts: 0)
        }
        let shouldStop: @Sendable () -> Bool = { stop.isRequested || isCancelled() }
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
            case .success(let result):
                if result == .notModified {
                    unlink(path)
                }
                return result
            case .failure(let failure):
                let error = HTTPError(kind: failure.kind, url: request.url, detail: failure.detail, attempts: attempt)
                let delay = backoff(beforeRetry: attempt)
                // No retry that the deadline would cut short anyway.
                guard error.isTransient, attempt < attempts, clock.now + delay < deadline, !shouldStop() else {
                    unlink(path)
                    throw error
                }
                notice?(
                    "\(Masking.url(request.url)): retrying in \(Self.describe(delay)) after \(error.shortReason) "
                        + "(attempt \(attempt + 1) of \(attempts))")
                clock.sleep(delay, stop: stop)
                if shouldStop() {
                    unlink(path)
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
