/// The app's config vars, as Heroku hands them over: one file per variable in ENV_DIR.
public enum ConfigVars {
    public static func read(envDir: String?) -> [String: String] {
        guard let envDir, Files.isDirectory(envDir) else { return [:] }
        var vars: [String: String] = [:]
        for name in Files.list(envDir) where !name.hasPrefix(".") {
            guard let value = try? Files.read(envDir + "/" + name) else { continue }
            // As `$(cat file)` would: trailing newlines go.
            var trimmed = Substring(value)
            while trimmed.last == "\n" || trimmed.last == "\r\n" { trimmed = trimmed.dropLast() }
            vars[name] = String(trimmed)
        }
        return vars
    }
}

/// multipack's own switches (SPEC §10), read from the config vars and then the environment.
public struct Settings: Sendable {
    public var release: ReleaseMode = .merge
    public var hooks: HookMode = .multipack
    public var fetchTimeout: Int = 300
    /// The largest download accepted (`MULTIPACK_MAX_DOWNLOAD`), 1 GiB unless set.
    public var maxDownload: Int64 = 1 << 30
    public var registryURL = "https://buildpack-registry.s3.amazonaws.com/buildpacks"
    public var xtrace = false
    /// Measure BUILD_DIR after each child and hook (SPEC §14); `MULTIPACK_SIZES=0` turns it off.
    public var sizes = true

    public enum HookMode: String, Sendable { case multipack, children }

    public init() {}

    public init(configVars: [String: String], environment: [String: String]) throws(MultipackError) {
        // Every variable is trimmed the same way: surrounding blanks and line ends.
        func value(_ name: String) -> String? { (configVars[name] ?? environment[name]).map(Self.trimmed) }
        func choice<T: RawRepresentable>(_ name: String, _ fallback: T) throws(MultipackError) -> T
        where T.RawValue == String {
            guard let raw = value(name), !raw.isEmpty else { return fallback }
            guard let parsed = T(rawValue: raw.lowercased()) else {
                throw MultipackError.unknownValue(name, raw, accepted: "\(T.self)".choices)
            }
            return parsed
        }
        release = try choice("MULTIPACK_RELEASE", ReleaseMode.merge)
        hooks = try choice("MULTIPACK_HOOKS", HookMode.multipack)
        if let raw = value("MULTIPACK_FETCH_TIMEOUT"), !raw.isEmpty {
            // Bounded: a value near Int.max overflowed the timeout's arithmetic (SPEC §10, §11).
            guard let seconds = Int(raw), (1...86_400).contains(seconds) else {
                throw MultipackError.unknownValue(
                    "MULTIPACK_FETCH_TIMEOUT", String(raw.prefix(40)),
                    accepted: "a whole number of seconds from 1 to 86400")
            }
            fetchTimeout = seconds
        }
        if let raw = value("MULTIPACK_MAX_DOWNLOAD"), !raw.trimmingBlanks().isEmpty {
            guard let bytes = Self.byteCount(raw.trimmingBlanks()), bytes > 0 else {
                throw MultipackError.unknownValue(
                    "MULTIPACK_MAX_DOWNLOAD", raw,
                    accepted: "a number of bytes above 0, with an optional K, M or G suffix (e.g. 500M or 2G)")
            }
            maxDownload = bytes
        }
        if let url = value("MULTIPACK_REGISTRY_URL"), !url.isEmpty {
            registryURL = url
        }
        xtrace = try Self.boolean("BUILDPACK_XTRACE", value("BUILDPACK_XTRACE"))
        if let raw = value("MULTIPACK_SIZES") { sizes = try Self.boolean("MULTIPACK_SIZES", raw) }
    }

    /// `1500`, `64K`, `500M`, `2G` (binary multiples); nil when it is not that or does not fit.
    static func byteCount(_ raw: String) -> Int64? {
        var digits = Substring(raw)
        var multiplier: Int64 = 1
        if let last = digits.last, let scale = ["k": Int64(1) << 10, "m": 1 << 20, "g": 1 << 30][last.lowercased()] {
            multiplier = scale
            digits = digits.dropLast()
        }
        guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber), let count = Int64(digits)
        else {
            return nil
        }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : bytes
    }

    /// The archive URL of a registry name: `<registry>/namespace/name.tgz`, keeping a query the
    /// registry URL carries (a signed URL) after the path.
    public func registryArchiveURL(namespace: String, name: String) -> String {
        let query = registryURL.firstIndex(of: "?").map { registryURL[$0...] } ?? ""
        var base = registryURL.dropLast(query.count)
        while base.hasSuffix("/") { base = base.dropLast() }
        return "\(base)/\(namespace)/\(name).tgz\(query)"
    }

    static func trimmed(_ raw: String) -> String {
        var text = Substring(raw)
        while let first = text.first, first == " " || first == "\t" || first == "\n" || first == "\r\n" || first == "\r"
        {
            text = text.dropFirst()
        }
        while let last = text.last, last == " " || last == "\t" || last == "\n" || last == "\r\n" || last == "\r" {
            text = text.dropLast()
        }
        return String(text)
    }

    /// 1/true/yes/on and 0/false/no/off/empty, in any case: `0` means off.
    public static func boolean(_ name: String, _ raw: String?) throws(MultipackError) -> Bool {
        guard let raw else { return false }
        switch raw.trimmingBlanks().lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off", "": return false
        default:
            throw MultipackError.unknownValue(
                name, raw, accepted: "1, true, yes, on (on) or 0, false, no, off, empty (off)")
        }
    }
}

extension String {
    fileprivate var choices: String {
        switch self {
        case "ReleaseMode": return "merge or last"
        case "HookMode": return "multipack or children"
        default: return self
        }
    }

    func trimmingBlanks() -> String {
        String(Substring(self).trimmingBlanks())
    }
}
