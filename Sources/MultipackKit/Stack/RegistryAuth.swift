import FoundationEssentials
import Synchronization

/// A `WWW-Authenticate` challenge: `Bearer realm="…",service="…",scope="…"` (Docker Hub, GHCR)
/// or `Basic realm="…"`.
struct AuthChallenge: Sendable, Equatable, Codable {
    var scheme: String
    var parameters: [String: String]

    var realm: String? { parameters["realm"] }

    /// The first Bearer or Basic challenge in the header's values; nil when there is none.
    static func parse(_ values: [String]) -> AuthChallenge? {
        let challenges = values.compactMap(parseOne)
        return challenges.first { $0.scheme == "bearer" } ?? challenges.first { $0.scheme == "basic" }
    }

    /// `Scheme key=value, key="quoted \" value"`, read in one pass.
    static func parseOne(_ value: String) -> AuthChallenge? {
        let bytes = Array(value.utf8.prefix(8192))
        var i = 0
        func skipBlanks() { while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x09 { i += 1 } }
        func token() -> String {
            let start = i
            while i < bytes.count, ![0x20, 0x09, 0x3d, 0x2c].contains(bytes[i]) { i += 1 }
            return String(decoding: bytes[start..<i], as: UTF8.self)
        }
        skipBlanks()
        let scheme = token().lowercased()
        guard scheme == "bearer" || scheme == "basic" else { return nil }
        var parameters: [String: String] = [:]
        while i < bytes.count {
            skipBlanks()
            while i < bytes.count, bytes[i] == 0x2c || bytes[i] == 0x20 { i += 1 }
            let key = token().lowercased()
            skipBlanks()
            guard !key.isEmpty, i < bytes.count, bytes[i] == 0x3d else { break }
            i += 1
            skipBlanks()
            var value: [UInt8] = []
            if i < bytes.count, bytes[i] == 0x22 {
                i += 1
                while i < bytes.count, bytes[i] != 0x22 {
                    if bytes[i] == 0x5c, i + 1 < bytes.count { i += 1 }
                    value.append(bytes[i])
                    i += 1
                }
                i += 1
            } else {
                while i < bytes.count, bytes[i] != 0x2c {
                    value.append(bytes[i])
                    i += 1
                }
            }
            parameters[key] = String(decoding: value, as: UTF8.self).trimmingBlanks()
        }
        return AuthChallenge(scheme: scheme, parameters: parameters)
    }
}

/// The credentials `~/.docker/config.json` keeps for a registry (`auths`), as `docker login`
/// writes them: never printed, never written anywhere by multipack.
struct RegistryCredentials: Sendable, Equatable {
    var username: String
    var password: String

    /// `Basic <base64(user:password)>`.
    var basicHeader: String {
        "Authorization: Basic " + Data("\(username):\(password)".utf8).base64EncodedString()
    }

    private struct ConfigFile: Decodable {
        var auths: [String: Entry]?
        struct Entry: Decodable {
            var auth: String?
            var username: String?
            var password: String?
        }
    }

    /// The entry for `registry` in `$DOCKER_CONFIG/config.json` (or `~/.docker/config.json`), if any.
    static func find(for registry: String, environment: [String: String]) -> RegistryCredentials? {
        let directory =
            environment["DOCKER_CONFIG"].flatMap { $0.isEmpty ? nil : $0 }
            ?? ((environment["HOME"] ?? "/") + "/.docker")
        let path = directory + "/config.json"
        guard Files.isRegularFile(path), Files.size(path) <= 1 << 20,
            let bytes = try? Files.readRegularFile(path),
            let file = try? JSONDecoder().decode(ConfigFile.self, from: Data(bytes)),
            let auths = file.auths
        else { return nil }
        let wanted = keys(for: registry)
        for (key, entry) in auths.sorted(by: { $0.key < $1.key }) where wanted.contains(host(ofKey: key)) {
            if let encoded = entry.auth, let data = Data(base64Encoded: encoded),
                let text = String(data: data, encoding: .utf8), let colon = text.firstIndex(of: ":")
            {
                return RegistryCredentials(
                    username: String(text[..<colon]), password: String(text[text.index(after: colon)...]))
            }
            if let username = entry.username, let password = entry.password {
                return RegistryCredentials(username: username, password: password)
            }
        }
        return nil
    }

    /// The names an `auths` key may give a registry: Docker Hub goes by several.
    private static func keys(for registry: String) -> Set<String> {
        ImageReference.dockerHubAliases.contains(registry) ? ImageReference.dockerHubAliases : [registry]
    }

    /// `https://index.docker.io/v1/` → `index.docker.io`.
    private static func host(ofKey key: String) -> String {
        var rest = Substring(key)
        for scheme in ["https://", "http://"] where rest.hasPrefix(scheme) { rest = rest.dropFirst(scheme.count) }
        return String(rest.prefix { $0 != "/" })
    }
}

/// The token a registry's auth service gives for one repository, shared by the pull's threads,
/// and fetched again when it expires (Docker Hub's last five minutes; a cold pull of a large
/// image on a slow line takes longer).
final class RegistryAuth: Sendable {
    private struct State {
        var challenge: AuthChallenge?
        var header: String?
        var expires: ContinuousClock.Instant?
    }

    let credentials: RegistryCredentials?
    private let state: Mutex<State>

    init(credentials: RegistryCredentials?, challenge: AuthChallenge?) {
        self.credentials = credentials
        state = Mutex(State(challenge: challenge))
    }

    /// The challenge last seen, for the cache (realm and service are no secrets).
    var challenge: AuthChallenge? { state.withLock { $0.challenge } }

    /// The header to send now: a Bearer token (fetched first when a challenge is known but no
    /// live token), Basic credentials for a Basic challenge, or nil (anonymous).
    func header(fetch: (AuthChallenge) throws -> (token: String, lifetime: Duration?)) throws -> String? {
        try state.withLock { state in
            if let header = state.header, state.expires.map({ ContinuousClock.now < $0 }) ?? true {
                return header
            }
            guard let challenge = state.challenge else { return nil }
            try renew(&state, challenge, fetch: fetch)
            return state.header
        }
    }

    /// After a 401: the challenge it carried replaces the known one, and a new header is made,
    /// unless another thread already replaced the one that failed. False when nothing new can be
    /// sent (no challenge, or Basic without credentials).
    func refresh(
        after failed: String?, challenge: AuthChallenge?,
        fetch: (AuthChallenge) throws -> (token: String, lifetime: Duration?)
    ) throws -> Bool {
        try state.withLock { state in
            if state.header != nil && state.header != failed { return true }
            guard let challenge = challenge ?? state.challenge else { return false }
            state.challenge = challenge
            try renew(&state, challenge, fetch: fetch)
            return state.header != nil && state.header != failed
        }
    }

    private func renew(
        _ state: inout State, _ challenge: AuthChallenge,
        fetch: (AuthChallenge) throws -> (token: String, lifetime: Duration?)
    ) throws {
        state.header = nil
        state.expires = nil
        if challenge.scheme == "basic" {
            state.header = credentials?.basicHeader
            return
        }
        let (token, lifetime) = try fetch(challenge)
        state.header = "Authorization: Bearer \(token)"
        // Renewed half a minute early, so no request starts with a token about to lapse.
        state.expires = lifetime.map { ContinuousClock.now + max(.seconds(10), $0 - .seconds(30)) }
    }

    /// The token service's answer: `{"token": …, "access_token": …, "expires_in": 300}`.
    struct TokenAnswer: Decodable {
        var token: String?
        var access_token: String?
        var expires_in: Int?
    }

    /// `realm?service=…&scope=repository:NAME:pull`.
    static func tokenURL(_ challenge: AuthChallenge, repository: String) -> String? {
        guard let realm = challenge.realm, !realm.isEmpty else { return nil }
        var query: [String] = []
        if let service = challenge.parameters["service"] { query.append("service=" + percentEncoded(service)) }
        query.append("scope=" + percentEncoded(challenge.parameters["scope"] ?? "repository:\(repository):pull"))
        return realm + (realm.contains("?") ? "&" : "?") + query.joined(separator: "&")
    }

    private static func percentEncoded(_ text: String) -> String {
        var result = ""
        for byte in text.utf8 {
            let c = Character(UnicodeScalar(byte))
            if c.isASCII && (c.isLetter || c.isNumber || "-._~:/".contains(c)) {
                result.append(c)
            } else {
                result += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return result
    }
}
