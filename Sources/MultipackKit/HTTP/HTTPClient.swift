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
    /// The limit for a whole attempt (`MULTIPACK_FETCH_TIMEOUT`).
    public var timeout: Duration
    /// The limit for establishing the connection.
    public var connectTimeout: Duration
    /// How many times a transient failure is retried.
    public var maxRetries: Int
    /// A transfer slower than `lowSpeedLimit` bytes per second for `lowSpeedTime` is abandoned as
    /// stalled, long before the overall timeout would end it.
    public var lowSpeedLimit: Int
    /// See `lowSpeedLimit`. libcurl counts it in whole seconds.
    public var lowSpeedTime: Duration

    public init(
        url: String,
        ifNoneMatch: String? = nil,
        ifModifiedSince: String? = nil,
        timeout: Duration = .seconds(300),
        connectTimeout: Duration = .seconds(10),
        maxRetries: Int = 3,
        lowSpeedLimit: Int = 1,
        lowSpeedTime: Duration = .seconds(30)
    ) {
        self.url = url
        self.ifNoneMatch = ifNoneMatch
        self.ifModifiedSince = ifModifiedSince
        self.timeout = timeout
        self.connectTimeout = connectTimeout
        self.maxRetries = maxRetries
        self.lowSpeedLimit = lowSpeedLimit
        self.lowSpeedTime = lowSpeedTime
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

/// Downloads files through libcurl (loaded on first use), streaming them to disk, with redirects,
/// time limits and retries with exponential backoff (SPEC §5).
public struct HTTPClient: Sendable {
    /// The wait before the first retry; each further retry waits twice as long.
    public var backoffBase: Duration
    /// The longest wait between two attempts.
    public var maxBackoff: Duration
    /// How often a running download reports progress.
    public var progressInterval: Duration
    /// Waits between attempts; tests replace it to run fast.
    public var sleep: @Sendable (Duration) -> Void

    public init(
        backoffBase: Duration = .seconds(1),
        maxBackoff: Duration = .seconds(30),
        progressInterval: Duration = .seconds(5),
        sleep: @escaping @Sendable (Duration) -> Void = HTTPClient.systemSleep
    ) {
        self.backoffBase = backoffBase
        self.maxBackoff = maxBackoff
        self.progressInterval = progressInterval
        self.sleep = sleep
    }

    /// Downloads `request.url` into the file at `path`, replacing it. The caller passes a temporary
    /// name and renames it on success; on any failure, and on `.notModified`, nothing is left at
    /// `path`.
    ///
    /// - Throws: `HTTPError`, with the URL masked.
    public func download(
        _ request: DownloadRequest,
        to path: String,
        progress: (@Sendable (DownloadProgress) -> Void)?
    ) throws -> DownloadResult {
        let library: CurlLibrary
        switch CurlLibrary.shared {
        case .success(let loaded): library = loaded
        case .failure(let reason):
            throw HTTPError(kind: .libraryUnavailable, url: request.url, detail: reason.message, attempts: 0)
        }
        var attempt = 0
        while true {
            attempt += 1
            let outcome = CurlTransfer(
                library: library,
                request: request,
                path: path,
                progressInterval: progressInterval,
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
                guard error.isTransient, attempt <= request.maxRetries else {
                    unlink(path)
                    throw error
                }
                sleep(backoff(beforeRetry: attempt))
            }
        }
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

    /// Sleeps the calling thread; downloads are synchronous and run on their own threads.
    public static func systemSleep(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        guard seconds > 0 || attoseconds > 0 else { return }
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) == -1 && errno == EINTR {
            request = remaining
        }
    }
}
