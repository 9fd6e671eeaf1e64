/// A download that failed, with the URL already masked (SPEC §9) so that the error can be printed
/// as it is.
public struct HTTPError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// The server answered with this status (≥ 400, or a redirect that could not be followed).
        case status(Int)
        /// The connection, a stalled transfer or the whole download ran out of time.
        case timeout
        /// libcurl failed with this error code; `message` is its explanation, masked.
        case network(code: Int, message: String)
        /// The connection closed before the announced size arrived.
        case truncated
        /// libcurl itself could not be loaded.
        case libraryUnavailable
        /// The downloaded bytes could not be written to the destination file.
        case fileSystem(String)
        /// multipack was asked to stop, or the build no longer needs the download.
        case stopped
        /// The body is larger than `MULTIPACK_MAX_DOWNLOAD`.
        case tooLarge(limit: Int64, announced: Int64?)
        /// An HTML page came where an archive was expected (a login or captive-portal page).
        case html(status: Int, title: String?)
    }

    public let kind: Kind
    /// The requested URL, masked.
    public let url: String
    /// More about the cause, when known: which time limit ran out, how much arrived, why libcurl
    /// could not be loaded. Already masked.
    public let detail: String?
    /// How many times the download was tried.
    public let attempts: Int

    public init(kind: Kind, url: String, detail: String? = nil, attempts: Int = 1) {
        self.kind = kind
        self.url = Masking.url(url)
        self.detail = detail.map(Masking.text)
        self.attempts = attempts
    }

    /// Whether trying again may help: server errors, rate limits, resets, timeouts and cut-off
    /// transfers. Never 4xx (except 408 and 429), never a local problem.
    public var isTransient: Bool {
        switch kind {
        case .status(let code):
            return code == 408 || code == 429 || ((500...599).contains(code) && code != 501)
        case .timeout, .truncated:
            return true
        case .network(let code, _):
            return Self.transientCurlCodes.contains(code)
        case .libraryUnavailable, .fileSystem, .stopped, .tooLarge, .html:
            return false
        }
    }

    /// The host could not be reached at all: its name could not be resolved, or no connection
    /// could be made (refused, no route).
    public var isUnreachable: Bool {
        if case .network(let code, _) = kind { return [6, 7].contains(code) }
        return false
    }

    // Name resolution, connection refused/reset, TLS handshake, send/receive, empty reply, HTTP/2
    // stream errors: what a flaky network or a restarting server produces.
    static let transientCurlCodes: Set<Int> = [5, 6, 7, 16, 35, 52, 55, 56, 92]

    public var description: String {
        var text: String
        switch kind {
        case .status(let code):
            text = "HTTP \(code)\(Self.reason(code).map { " (\($0))" } ?? "") from \(url). "
            text += Self.advice(forStatus: code)
        case .timeout:
            text = "Downloading \(url) timed out"
            text += detail.map { ": \($0)." } ?? "."
            text += " If the server is just slow, raise MULTIPACK_FETCH_TIMEOUT (seconds)."
        case .network(let code, let message):
            text = "Could not download \(url): \(Self.explain(curlCode: code, message: message))"
        case .truncated:
            text = "The connection to \(url) closed before the download was complete"
            text += detail.map { " (\($0))." } ?? "."
        case .libraryUnavailable:
            text = "libcurl could not be loaded: \(detail ?? "unknown reason"); install libcurl4"
            text += " (apt-get install libcurl4) to download \(url)."
        case .fileSystem(let message):
            text = "Could not save the download of \(url): \(message)."
        case .stopped:
            text = "The download of \(url) was stopped."
        case .tooLarge(let limit, let announced):
            text = "The download of \(url) was stopped: "
            text += announced.map { "the server announced \($0) bytes, " } ?? "the body is "
            text += "more than MULTIPACK_MAX_DOWNLOAD allows (\(limit) bytes). "
            text += "Check the URL; if the buildpack really is that large, raise MULTIPACK_MAX_DOWNLOAD (e.g. 2G)."
        case .html(let status, let title):
            text = "\(url) answered with an HTML page (HTTP \(status == 0 ? 200 : status)"
            text += title.map { ", title \"\($0)\"" } ?? ""
            text += ") where a buildpack archive was expected: a login or captive-portal page, or a web page "
            text += "instead of the file? Check the URL in .buildpacks (for GitHub, the release asset's download URL)."
        }
        if attempts > 1 {
            text += " Gave up after \(attempts) attempts."
        }
        return text
    }

    /// The cause in a few words, for the retry notice: `HTTP 503`, `a stall`.
    var shortReason: String {
        switch kind {
        case .status(let code): return "HTTP \(code)"
        case .timeout: return detail?.hasPrefix("no data arrived") == true ? "a stall" : "a timeout"
        case .truncated: return "a cut-off transfer"
        case .network(let code, _): return [52, 55, 56].contains(code) ? "a reset connection" : "a network error"
        default: return "a failure"
        }
    }

    private static func reason(_ status: Int) -> String? {
        switch status {
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 408: "Request Timeout"
        case 410: "Gone"
        case 429: "Too Many Requests"
        case 500: "Internal Server Error"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        default: nil
        }
    }

    private static func advice(forStatus code: Int) -> String {
        switch code {
        case 401, 403:
            "The server refused access: check the credentials or token in the URL, and that they are still valid."
        case 404, 410:
            "Nothing is there: check the URL in .buildpacks (a typo, a deleted release, a private repository?)."
        case 408, 429, 500...599:
            "The server had a problem; try the build again later."
        case 300..<400:
            "The server redirected without saying where to."
        default:
            "Check the URL in .buildpacks."
        }
    }

    private static func explain(curlCode code: Int, message: String) -> String {
        let why: String
        switch code {
        case 1: why = "only http, https and file URLs can be downloaded"
        case 3: why = "the URL is not valid"
        case 6: why = "the host name could not be resolved; check the URL and the network"
        case 7: why = "the server could not be reached or refused the connection"
        case 35, 60: why = "the secure (TLS) connection could not be established"
        case 37: why = "the file could not be read; check that it exists"
        case 47: why = "it redirected too many times (more than 10)"
        case 52, 55, 56: why = "the connection was reset"
        default: why = "the transfer failed"
        }
        return message.isEmpty ? "\(why)." : "\(why) (\(message))."
    }
}
