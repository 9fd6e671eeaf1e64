import FoundationEssentials
import Glibc
import Synchronization

/// The limits of a pull's requests (SPEC §5): one deadline per manifest or blob, redirects and
/// retries included; a stall; retries of transient failures.
public struct RegistryLimits: Sendable {
    public var timeout: Duration = .seconds(300)
    public var stallWindow: Duration = .seconds(30)
    public var maxRetries = 3
    /// Whether a registry that cannot be reached at the first request is tried again. A build
    /// that falls back to this machine offline (SPEC §15) does not wait on a registry that is not
    /// there; once one answered, every request gets its retries.
    public var retriesUnreachableRegistry = true
    /// A manifest or index larger than this is no real one (registries refuse above 4 MiB).
    public var maxManifestBytes: Int64 = 4 << 20
    /// A config larger than this is no real one.
    public var maxConfigBytes: Int64 = 8 << 20

    public init() {}
}

/// A manifest or index as the registry sent it, checked against its digest.
struct FetchedManifest: Sendable {
    var bytes: [UInt8]
    var digest: String
    var document: Document

    enum Document: Sendable {
        case index(ImageIndex)
        case manifest(ImageManifest)
    }
}

/// One repository of a registry over the OCI distribution API: manifests by tag or digest,
/// blobs by digest, each checked against its digest before anything uses it. Follows redirects
/// itself so that the registry's token never reaches another host (a CDN's signed URL needs
/// none), and asks the registry again when such a URL has expired.
final class RegistryClient: Sendable {
    let image: ImageReference
    let http: HTTPClient
    let limits: RegistryLimits
    let auth: RegistryAuth
    let notice: @Sendable (String) -> Void
    /// The registry answered once.
    private let reached = Atomic<Bool>(false)

    init(
        image: ImageReference, http: HTTPClient, limits: RegistryLimits, auth: RegistryAuth,
        notice: @escaping @Sendable (String) -> Void
    ) {
        self.image = image
        self.http = http
        self.limits = limits
        self.auth = auth
        self.notice = notice
    }

    private var retriesUnreachable: Bool {
        limits.retriesUnreachableRegistry || reached.load(ordering: .relaxed)
    }

    private static let redirects: Set<Int> = [301, 302, 303, 307, 308]
    private static let acceptManifests = "Accept: " + MediaType.accepted.joined(separator: ", ")

    /// The digest a tag names now, from a HEAD request (which Docker Hub does not count against
    /// its pull limit); nil when the registry does not say.
    func currentDigest(ofTag tag: String) throws -> String? {
        let response = try exchange(
            image.manifestURL(tag), method: .head, headers: [Self.acceptManifests], bodyTo: nil,
            maxBytes: limits.maxManifestBytes, what: "the manifest of \(image.written)")
        return response.header("docker-content-digest").flatMap(ImageReference.validDigest)
    }

    /// The manifest or index named by `reference` (a tag or a digest), checked: by its digest
    /// when asked for by one, else against the digest the registry announces.
    func manifest(_ reference: String, what: String) throws -> FetchedManifest {
        let response = try exchange(
            image.manifestURL(reference), method: .get, headers: [Self.acceptManifests], bodyTo: nil,
            maxBytes: limits.maxManifestBytes, what: what)
        let digest = try "sha256:" + sha256Hex(of: response.body)
        let expected = ImageReference.validDigest(reference) ?? response.header("docker-content-digest")
        if let expected, expected != digest {
            throw StackError.pull(
                image, "\(what) does not match its digest: expected \(expected), its bytes hash to \(digest).",
                hint: "The registry or something between it and this machine changed it; nothing of it was kept.")
        }
        return FetchedManifest(bytes: response.body, digest: digest, document: try document(response, what: what))
    }

    /// Downloads a blob to `path`, then checks its size and digest; on any failure nothing is
    /// left at `path`.
    func blob(
        _ blob: Descriptor, to path: String, what: String, layer: String?,
        progress: (@Sendable (DownloadProgress) -> Void)? = nil
    ) throws {
        do {
            let response = try exchange(
                image.blobURL(blob.digest), method: .get, headers: [], bodyTo: path, maxBytes: blob.size, what: what,
                layer: layer, progress: progress)
            guard response.bytes == blob.size else {
                throw StackError.pull(
                    image, layer: layer,
                    "the registry sent \(response.bytes) bytes where the manifest says \(blob.size).")
            }
            let digest = try "sha256:" + sha256Hex(ofFile: path)
            guard digest == blob.digest else {
                throw StackError.pull(
                    image, layer: layer, "its bytes do not match its digest (they hash to \(digest)).",
                    hint:
                        "The registry or something between it and this machine sent damaged data; nothing of it was kept."
                )
            }
        } catch {
            unlink(path)
            throw error
        }
    }

    /// A small blob (the config) in memory, checked against its digest.
    func smallBlob(_ blob: Descriptor, what: String) throws -> [UInt8] {
        let response = try exchange(
            image.blobURL(blob.digest), method: .get, headers: [], bodyTo: nil, maxBytes: blob.size, what: what)
        let digest = try "sha256:" + sha256Hex(of: response.body)
        guard response.body.count == blob.size, digest == blob.digest else {
            throw StackError.pull(
                image,
                "\(what) does not match its digest \(blob.digest) (\(response.body.count) bytes hashing to \(digest)).")
        }
        return response.body
    }

    private func contentType(_ response: HTTPResponse) -> String? {
        response.header("content-type")?.lowercased()
    }

    private func document(_ response: HTTPResponse, what: String) throws -> FetchedManifest.Document {
        struct Shape: Decodable {
            var schemaVersion: Int?
            var mediaType: String?
            var manifests: [Descriptor]?
            var layers: [Descriptor]?
        }
        guard let shape = JSONDecoder.registry(Shape.self, from: response.body) else {
            throw StackError.pull(image, "\(what) is not valid JSON.")
        }
        if shape.schemaVersion == 1 {
            throw StackError.pull(
                image, "\(what) is in Docker's schema 1, which registries stopped serving in 2019.",
                hint: "Push the image again with a current tool.")
        }
        let type = shape.mediaType ?? contentType(response)?.split(separator: ";").first.map(String.init)
        if MediaType.isIndex(type) || (type == nil && shape.manifests != nil) {
            guard let index = JSONDecoder.registry(ImageIndex.self, from: response.body) else {
                throw StackError.pull(image, "\(what) is an index multipack cannot read.")
            }
            return .index(index)
        }
        if MediaType.isManifest(type) || (type == nil && shape.layers != nil) {
            guard let manifest = JSONDecoder.registry(ImageManifest.self, from: response.body) else {
                throw StackError.pull(image, "\(what) is a manifest multipack cannot read.")
            }
            return .manifest(manifest)
        }
        throw StackError.pull(
            image, "\(what) has the media type \(type ?? "none"), which is no image manifest or index.")
    }

    /// One request, with the registry's authentication and the redirects followed by hand.
    private func exchange(
        _ start: String, method: DownloadRequest.Method, headers: [String], bodyTo path: String?, maxBytes: Int64,
        what: String, layer: String? = nil, progress: (@Sendable (DownloadProgress) -> Void)? = nil
    ) throws -> HTTPResponse {
        let deadline = ContinuousClock.now + limits.timeout
        var url = start
        var hops: [String] = []
        var freshRedirects = 0
        var refreshed = false
        while true {
            let onRegistry = Self.origin(url) == Self.origin(image.baseURL)
            var sent = headers
            var authorization: String?
            if onRegistry {
                authorization = try auth.header(fetch: token)
                if let authorization { sent.append(authorization) }
            }
            let left = deadline - ContinuousClock.now
            guard left > .zero else {
                throw StackError.http(
                    HTTPError(kind: .timeout, url: url, detail: "the deadline passed while following redirects"),
                    image: image, what: what, layer: layer)
            }
            var request = DownloadRequest(
                url: url, timeout: left, maxRetries: limits.maxRetries, stallWindow: limits.stallWindow,
                maxBytes: maxBytes, expectsArchive: true, method: method, headers: sent, followsRedirects: false,
                answeredStatuses: Self.redirects.union(onRegistry ? [401, 429] : [400, 401, 403, 410, 429]))
            request.retriesUnreachable = retriesUnreachable
            let response: HTTPResponse
            do {
                response = try http.send(request, bodyTo: path, progress: progress, notice: notice)
                reached.store(true, ordering: .relaxed)
            } catch let error as HTTPError {
                throw StackError.http(error, image: image, what: what, layer: layer)
            }
            switch response.status {
            case let status where Self.redirects.contains(status):
                hops.append(url)
                url = try redirect(response, from: url, hops: hops, what: what, layer: layer)
            case 401 where onRegistry:
                let challenge = AuthChallenge.parse(response.headers(named: "www-authenticate"))
                guard !refreshed, try auth.refresh(after: authorization, challenge: challenge, fetch: token) else {
                    throw StackError.http(
                        HTTPError(kind: .status(401), url: url), image: image, what: what, layer: layer)
                }
                refreshed = true
            case 429:
                throw StackError.pull(
                    image, layer: layer,
                    "the registry limits how often it may be asked (HTTP 429 for \(what))"
                        + (response.header("retry-after").map { "; it says to retry after \(Self.retryAfter($0))." }
                            ?? "."),
                    hint:
                        "Docker Hub allows anonymous users 100 pulls per 6 hours: wait, log in (docker login) so that "
                        + "~/.docker/config.json holds credentials, or use a mirror (\(ImageReference.mirrorVariable))."
                )
            case let status where !onRegistry && [400, 401, 403, 410].contains(status) && freshRedirects < 2:
                // A CDN's signed URL lapses after minutes: the registry signs a new one.
                freshRedirects += 1
                notice("       \(Masking.url(url)) answered HTTP \(response.status): asking the registry again")
                url = start
                hops = []
            case let status where !onRegistry && status >= 400:
                throw StackError.http(
                    HTTPError(kind: .status(status), url: url), image: image, what: what, layer: layer)
            default:
                return response
            }
        }
    }

    /// Where a redirect leads, refused when it loops, goes on too long, or leaves HTTPS for a
    /// host off this machine.
    private func redirect(
        _ response: HTTPResponse, from url: String, hops: [String], what: String, layer: String?
    ) throws -> String {
        guard let location = response.header("location"), !location.isEmpty else {
            throw StackError.pull(
                image, layer: layer, "the registry redirected (HTTP \(response.status)) without saying where to.")
        }
        let next = Self.resolve(location, against: url)
        if hops.contains(next) || hops.count > 10 {
            let path = (hops + [next]).suffix(4).map(Masking.url).joined(separator: " → ")
            throw StackError.pull(
                image, layer: layer,
                hops.contains(next)
                    ? "the registry redirects in a loop while sending \(what): \(path)."
                    : "the registry redirected more than 10 times while sending \(what): … \(path).")
        }
        let origin = Self.origin(next)
        let secure =
            origin.hasPrefix("https://")
            || (origin.hasPrefix("http://")
                && (ImageReference.isLoopback(String(origin.dropFirst(7))) || origin == Self.origin(image.baseURL)))
        guard secure else {
            throw StackError.pull(
                image, layer: layer,
                "the registry redirected to \(Masking.url(next)); multipack follows only https, and plain http on this machine."
            )
        }
        return next
    }

    /// Asks the challenge's realm for a token for this repository (with the credentials of
    /// `~/.docker/config.json` when it has some for the registry).
    private func token(_ challenge: AuthChallenge) throws -> (token: String, lifetime: Duration?) {
        guard challenge.scheme == "bearer", let url = RegistryAuth.tokenURL(challenge, repository: image.repository)
        else {
            throw StackError.pull(
                image,
                "the registry asks for credentials (\(challenge.scheme) authentication), and ~/.docker/config.json has none for \(image.registry).",
                hint:
                    "Log in (docker login \(image.registry)), or add an \"auths\" entry for it to ~/.docker/config.json."
            )
        }
        let origin = Self.origin(url)
        guard origin.hasPrefix("https://") || ImageReference.isLoopback(String(origin.dropFirst(7))) else {
            throw StackError.pull(
                image, "the registry's token service \(Masking.url(url)) is plain http off this machine; refused.")
        }
        var request = DownloadRequest(
            url: url, timeout: limits.timeout, maxRetries: limits.maxRetries, stallWindow: limits.stallWindow,
            maxBytes: 1 << 20, headers: auth.credentials.map { [$0.basicHeader] } ?? [], answeredStatuses: [401, 403])
        request.retriesUnreachable = retriesUnreachable
        let response: HTTPResponse
        do {
            response = try http.send(request, notice: notice)
            reached.store(true, ordering: .relaxed)
        } catch let error as HTTPError {
            throw StackError.http(error, image: image, what: "a token from \(error.url)")
        }
        guard response.status != 401 && response.status != 403 else {
            throw StackError.pull(
                image,
                "the registry's token service refused \(auth.credentials == nil ? "an anonymous pull" : "the credentials of ~/.docker/config.json") (HTTP \(response.status)).",
                hint: "A private image needs credentials: docker login \(image.registry).")
        }
        guard let answer = JSONDecoder.registry(RegistryAuth.TokenAnswer.self, from: response.body),
            let token = answer.token.flatMap({ $0.isEmpty ? nil : $0 }) ?? answer.access_token, !token.isEmpty,
            token.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f })
        else {
            throw StackError.pull(image, "the registry's token service answered without a usable token.")
        }
        return (token, answer.expires_in.map { .seconds(max(0, $0)) })
    }

    /// `Retry-After`: seconds, or an HTTP date shown as it is.
    static func retryAfter(_ value: String) -> String {
        guard let seconds = Int(value.trimmingBlanks()) else { return String(value.prefix(60)) }
        return DownloadProgress.format(seconds: Int64(max(0, seconds)))
    }

    /// `scheme://host[:port]` in lower case.
    static func origin(_ url: String) -> String {
        guard let schemeEnd = url.firstRange(of: "://") else { return "" }
        let rest = url[schemeEnd.upperBound...]
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        let host = authority.split(separator: "@").last.map(String.init) ?? ""
        return (url[..<schemeEnd.lowerBound] + "://" + host).lowercased()
    }

    /// A Location value made absolute against the URL that sent it.
    static func resolve(_ location: String, against url: String) -> String {
        let lower = location.lowercased()
        if lower.hasPrefix("http://") || lower.hasPrefix("https://") { return location }
        let origin = origin(url)
        if location.hasPrefix("//") { return String(origin.prefix { $0 != ":" }) + ":" + location }
        if location.hasPrefix("/") { return origin + location }
        let path = url.dropFirst(origin.count).prefix { $0 != "?" && $0 != "#" }
        let directory = path.lastIndex(of: "/").map { path[...$0] } ?? "/"
        return origin + directory + location
    }
}
