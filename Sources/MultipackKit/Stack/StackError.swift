/// Why a stack image could not be had: one ` !     ` block naming the image, the registry and,
/// where one is involved, the layer's digest (SPEC §11, §15). Exit code 1.
public struct StackError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// The registry could not be reached at all (DNS, refused, no route): what the offline
        /// fallback of a build that named no image looks for.
        case unreachable
        /// Anything else: a status, a digest that does not match, a refused layer, a deadline.
        case failed
        /// multipack was asked to stop.
        case stopped
    }

    public var kind: Kind
    public var headline: String
    public var details: [String]
    public var hint: String?

    public init(_ headline: String, details: [String] = [], hint: String? = nil, kind: Kind = .failed) {
        self.kind = kind
        self.headline = headline
        self.details = details
        self.hint = hint
    }

    public var description: String {
        ([headline] + details + (hint.map { ["", $0] } ?? [])).joined(separator: "\n")
    }

    /// `Could not pull the stack image heroku/heroku:24-build (registry-1.docker.io).`
    static func pull(
        _ image: ImageReference, layer: String? = nil, _ why: String, kind: Kind = .failed, hint: String? = nil
    ) -> StackError {
        StackError(
            "Could not pull the stack image \(image.shown).",
            details: [layer.map { "Layer \($0): \(why)" } ?? why.prefix(1).uppercased() + why.dropFirst()], hint: hint,
            kind: kind)
    }

    /// An HTTP failure said in a registry's terms.
    static func http(_ error: HTTPError, image: ImageReference, what: String, layer: String? = nil) -> StackError {
        let pullHint = "Try again later; `multipack stack pull \(image.written)` fetches it ahead of a build."
        switch error.kind {
        case .network where error.isUnreachable:
            return .pull(
                image, layer: layer, "the registry cannot be reached: \(error.description)", kind: .unreachable,
                hint: "Check the network, or send Docker Hub's names to a mirror with \(ImageReference.mirrorVariable)."
            )
        case .stopped:
            return .pull(image, layer: layer, StackError.stoppedReason, kind: .stopped)
        case .timeout:
            return .pull(
                image, layer: layer,
                "the registry stalled or was too slow while sending \(what): \(error.detail ?? "time ran out")."
                    + (error.attempts > 1 ? " Gave up after \(error.attempts) attempts." : ""),
                hint: error.detail?.hasPrefix("no data arrived") == true
                    ? "Try again later: the registry, or the network on the way, stopped sending."
                    : "Try again later; raise MULTIPACK_FETCH_TIMEOUT (seconds) for a slow network.")
        case .status(let code):
            let why =
                switch code {
                case 404: "the registry has no such image (HTTP 404 for \(what)); check its name and tag."
                case 401, 403:
                    "the registry refused access (HTTP \(code) for \(what)); a private image needs credentials "
                        + "in ~/.docker/config.json (docker login, or an \"auths\" entry)."
                default: "HTTP \(code) for \(what) from \(error.url)."
                }
            return .pull(
                image, layer: layer, why + (error.attempts > 1 ? " Gave up after \(error.attempts) attempts." : ""),
                hint: code >= 500 ? pullHint : nil)
        case .tooLarge:
            return .pull(image, layer: layer, "the registry sent more than the manifest says \(what) holds.")
        case .html(let status, let title):
            return .pull(image, layer: layer, htmlPage(status: status, title: title, what: what))
        default:
            return .pull(image, layer: layer, error.description)
        }
    }

    /// `the pull was stopped by SIGTERM.`
    static var stoppedReason: String {
        let signal = StopToken.signals.signal.map { " by \(signalName($0))" } ?? ""
        return "the pull was stopped\(signal)."
    }

    static func htmlPage(status: Int, title: String?, what: String) -> String {
        "the registry answered with an HTML page (HTTP \(status == 0 ? 200 : status)"
            + (title.map { ", title \"\($0)\"" } ?? "")
            + ") where \(what) was expected: a login or captive-portal page, or a web site that is no registry?"
    }
}
