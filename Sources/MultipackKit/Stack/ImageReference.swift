/// An image named as Docker names it, `[HOST[:PORT]/]NAME[:TAG|@sha256:DIGEST]`, resolved to the
/// registry that serves it (SPEC §15): Docker Hub's names go to `registry-1.docker.io` (a one-part
/// name gets `library/`), or to the mirror `MULTIPACK_STACK_REGISTRY` names.
public struct ImageReference: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// `host[:port]` as requests use it (`registry-1.docker.io`, `127.0.0.1:5000`, `[::1]:5000`).
    public var registry: String
    /// The repository on that registry (`heroku/heroku`, `library/ubuntu`, a mirror's prefix included).
    public var repository: String
    /// The tag, unless the image is named by digest alone; `latest` when none is written.
    public var tag: String?
    /// `sha256:<64 hex>` when the image is pinned; it wins over the tag.
    public var digest: String?
    /// `https`, or `http` for a loopback registry or a mirror that says `http://`.
    public var scheme: String
    /// The name as it was written, for messages.
    public var written: String

    public var description: String { written }

    /// `registry/repository:tag` or `registry/repository@sha256:…`: one spelling per image, for
    /// the cache's records.
    public var canonical: String {
        "\(registry)/\(repository)" + (digest.map { "@\($0)" } ?? ":\(tag ?? "latest")")
    }

    /// What the manifest is asked for by: the digest when pinned, else the tag.
    var manifestReference: String { digest ?? tag ?? "latest" }

    /// `https://registry-1.docker.io`, `http://127.0.0.1:5000`.
    public var baseURL: String { "\(scheme)://\(registry)" }

    /// The name and where it comes from, as messages show it: `heroku/heroku:24-build (registry-1.docker.io)`.
    public var shown: String { "\(written) (\(registry))" }

    func manifestURL(_ reference: String) -> String { "\(baseURL)/v2/\(repository)/manifests/\(reference)" }
    func blobURL(_ digest: String) -> String { "\(baseURL)/v2/\(repository)/blobs/\(digest)" }

    /// Docker Hub's registry, and the other names Docker gives it.
    public static let dockerHub = "registry-1.docker.io"
    static let dockerHubAliases: Set<String> = ["docker.io", "index.docker.io", "registry-1.docker.io"]
    /// The variable that sends Docker Hub's names to a mirror.
    public static let mirrorVariable = "MULTIPACK_STACK_REGISTRY"

    /// Parses `text`; a string that is no image reference is bad input (exit 2).
    public init(parsing text: String, environment: [String: String] = [:]) throws(MultipackError) {
        let shown = String(text.prefix(200))
        func refuse(_ why: String) -> MultipackError {
            MultipackError.usage(
                "'\(shown)' is not an image reference: \(why).",
                hint: "Write it as [HOST[:PORT]/]NAME[:TAG|@sha256:DIGEST], e.g. heroku/heroku:24-build.")
        }
        guard !text.isEmpty, text.utf8.count <= 512 else { throw refuse("it is empty or longer than 512 bytes") }
        guard text.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 && $0.value < 0x7f }) else {
            throw refuse("it holds blanks, control characters or non-ASCII characters")
        }
        var rest = Substring(text)
        var digest: String?
        if let at = rest.firstIndex(of: "@") {
            let value = String(rest[rest.index(after: at)...])
            guard let valid = Self.validDigest(value) else {
                throw refuse("the digest after @ must be sha256: and 64 lowercase hex digits")
            }
            digest = valid
            rest = rest[..<at]
        }
        var tag: String?
        if let colon = rest.lastIndex(of: ":"), !rest[colon...].contains("/") {
            let value = rest[rest.index(after: colon)...]
            guard Self.isTag(value) else {
                throw refuse(
                    "the tag '\(value)' must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
                )
            }
            tag = String(value)
            rest = rest[..<colon]
        }
        var components = rest.split(separator: "/", omittingEmptySubsequences: false)
        var host: Substring?
        if components.count > 1, let first = components.first,
            first.contains(".") || first.contains(":") || first == "localhost" || first.contains(where: \.isUppercase)
        {
            host = first
            components.removeFirst()
        }
        if let host {
            guard Self.isHost(host) else { throw refuse("'\(host)' is not a registry host[:port]") }
        }
        guard !components.isEmpty, components.allSatisfy(Self.isPathComponent) else {
            throw refuse(
                "a name is lowercase letters and digits in parts separated by '/', each part joined by '.', '_', '__' or '-'"
            )
        }
        let name = components.joined(separator: "/")
        guard name.utf8.count <= 255 else { throw refuse("the name is longer than 255 characters") }

        var registry = host.map(String.init) ?? Self.dockerHub
        var repository = name
        var scheme = Self.isLoopback(registry) ? "http" : "https"
        if Self.dockerHubAliases.contains(registry) {
            registry = Self.dockerHub
            if components.count == 1 { repository = "library/" + name }
            if let mirror = try Self.mirror(environment) {
                registry = mirror.host
                repository = mirror.prefix.map { "\($0)/\(repository)" } ?? repository
                scheme = mirror.scheme
            }
        }
        self.registry = registry
        self.repository = repository
        self.tag = digest == nil ? (tag ?? "latest") : tag
        self.digest = digest
        self.scheme = scheme
        self.written = text
    }

    /// Which image of a stack (SPEC §15): `build` for `build`/`ci`, `run` for `run` of an app.
    public enum StackRole: Sendable {
        case build, run
    }

    /// `heroku/heroku:<N>-build` or `heroku/heroku:<N>` for `heroku-<N>`.
    public static func forStack(
        _ stack: String, role: StackRole, environment: [String: String] = [:]
    ) throws(MultipackError) -> ImageReference {
        let number = stack.dropFirst("heroku-".count)
        guard stack.hasPrefix("heroku-"), (2...3).contains(number.count), number.allSatisfy(\.isASCII),
            number.allSatisfy(\.isNumber)
        else {
            throw MultipackError.usage(
                "'\(String(stack.prefix(100)))' is not a Heroku stack.",
                hint: "Name one as Heroku does: heroku-22, heroku-24.")
        }
        let tag = role == .build ? "\(number)-build" : String(number)
        return try ImageReference(parsing: "heroku/heroku:\(tag)", environment: environment)
    }

    /// `sha256:` and 64 lowercase hex digits, or nil: a digest names files in the cache, so no
    /// other shape is ever used.
    static func validDigest(_ text: String) -> String? {
        text.hasPrefix("sha256:") && CacheStore.isDigest(String(text.dropFirst(7))) ? text : nil
    }

    /// 127.0.0.0/8, `::1` and `localhost`, with or without a port: the registries plain HTTP is
    /// used for, since nothing on the way can read or change what they send.
    static func isLoopback(_ hostAndPort: String) -> Bool {
        var host = Substring(hostAndPort)
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return false }
            return host[host.index(after: host.startIndex)..<close] == "::1"
        }
        if let colon = host.firstIndex(of: ":") { host = host[..<colon] }
        if host == "localhost" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4, octets.allSatisfy({ $0.count <= 3 && UInt8($0) != nil }) else { return false }
        return octets[0] == "127"
    }

    private static func isTag(_ text: Substring) -> Bool {
        guard let first = text.first, (1...128).contains(text.count), first != ".", first != "-" else { return false }
        return text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "." || $0 == "-") }
    }

    /// `[a-z0-9]+` parts joined by one `.`, one `_`, `__`, or any number of `-`.
    private static func isPathComponent(_ text: Substring) -> Bool {
        func isAlnum(_ c: Character) -> Bool { c.isASCII && (c.isLowercase || c.isNumber) }
        guard let first = text.first, let last = text.last, isAlnum(first), isAlnum(last) else { return false }
        var separator = ""
        for c in text {
            if isAlnum(c) {
                guard
                    separator.isEmpty || separator == "." || separator == "_" || separator == "__"
                        || separator.allSatisfy({ $0 == "-" })
                else { return false }
                separator = ""
            } else if c == "." || c == "_" || c == "-" {
                separator.append(c)
            } else {
                return false
            }
        }
        return true
    }

    /// A DNS name, an IPv4 address or a bracketed IPv6 address, with an optional port.
    static func isHost(_ text: Substring) -> Bool {
        var host = text
        var port: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return false }
            host = text[text.index(after: text.startIndex)..<close]
            let after = text[text.index(after: close)...]
            guard host.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }), host.contains(":") else {
                return false
            }
            if !after.isEmpty {
                guard after.first == ":" else { return false }
                port = after.dropFirst()
            }
        } else {
            if let colon = text.firstIndex(of: ":") {
                host = text[..<colon]
                port = text[text.index(after: colon)...]
            }
            let labels = host.split(separator: ".", omittingEmptySubsequences: false)
            guard !host.isEmpty, host.count <= 253,
                labels.allSatisfy({ label in
                    guard let first = label.first, let last = label.last, label.count <= 63 else { return false }
                    return first.isASCII && (first.isLetter || first.isNumber) && last.isASCII
                        && (last.isLetter || last.isNumber)
                        && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
                })
            else { return false }
        }
        if let port {
            guard !port.isEmpty, port.count <= 5, port.allSatisfy({ $0.isASCII && $0.isNumber }),
                let number = Int(port), (1...65535).contains(number)
            else { return false }
        }
        return true
    }

    /// `MULTIPACK_STACK_REGISTRY=[http[s]://]HOST[:PORT][/PREFIX]`, or nil when unset.
    static func mirror(_ environment: [String: String]) throws(MultipackError) -> (
        scheme: String, host: String, prefix: String?
    )? {
        guard let raw = environment[mirrorVariable].map(Settings.trimmed), !raw.isEmpty else { return nil }
        func refuse() -> MultipackError {
            MultipackError.unknownValue(
                mirrorVariable, String(raw.prefix(200)),
                accepted: "[http[s]://]HOST[:PORT][/PREFIX], e.g. mirror.example.com or http://127.0.0.1:5000/dockerhub"
            )
        }
        var rest = Substring(raw)
        var scheme: String?
        for candidate in ["https", "http"] where rest.hasPrefix(candidate + "://") {
            scheme = candidate
            rest = rest.dropFirst(candidate.count + 3)
        }
        while rest.hasSuffix("/") { rest = rest.dropLast() }
        let slash = rest.firstIndex(of: "/")
        let host = slash.map { rest[..<$0] } ?? rest
        let prefix = slash.map { rest[rest.index(after: $0)...] }
        guard isHost(host) else { throw refuse() }
        if let prefix {
            guard prefix.split(separator: "/", omittingEmptySubsequences: false).allSatisfy(isPathComponent) else {
                throw refuse()
            }
        }
        let hostText = String(host)
        return (scheme ?? (isLoopback(hostText) ? "http" : "https"), hostText, prefix.map(String.init))
    }
}
