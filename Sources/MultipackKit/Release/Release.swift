/// What a buildpack's `bin/release` says (the classic Buildpack API).
public struct Release: Equatable, Sendable {
    public var addons: [String] = []
    public var configVars: [(key: String, value: String)] = []
    public var processTypes: [(key: String, value: String)] = []

    public init() {}

    public static func == (lhs: Release, rhs: Release) -> Bool {
        lhs.addons == rhs.addons && lhs.configVars.elementsEqual(rhs.configVars, by: ==)
            && lhs.processTypes.elementsEqual(rhs.processTypes, by: ==)
    }

    /// Reads `bin/release` output: a YAML mapping, or nothing at all.
    public static func parse(_ text: String, stop: StopToken = .signals) throws(ReleaseError) -> Release {
        let node: YAMLNode
        do {
            node = try YAML.parse(text, stop: stop)
        } catch {
            throw ReleaseError(message: "its output is not valid YAML (\(error))")
        }
        var release = Release()
        switch node {
        case .null: return release
        case .mapping(let pairs):
            for (key, value) in pairs {
                switch key {
                case "addons": release.addons = try strings(value, key)
                case "config_vars": release.configVars = try stringMap(value, key)
                case "default_process_types": release.processTypes = try stringMap(value, key)
                default: continue  // Heroku ignores keys it does not know; so do we.
                }
            }
            return release
        default:
            throw ReleaseError(message: "its output is not a YAML mapping")
        }
    }

    private static func strings(_ node: YAMLNode, _ key: String) throws(ReleaseError) -> [String] {
        switch node {
        case .null: return []
        case .sequence(let items):
            var out: [String] = []
            for item in items {
                guard case .scalar(let text) = item else {
                    throw ReleaseError(message: "`\(key)` must be a list of names")
                }
                out.append(text)
            }
            return out
        default: throw ReleaseError(message: "`\(key)` must be a list of names")
        }
    }

    private static func stringMap(_ node: YAMLNode, _ key: String) throws(ReleaseError) -> [(
        key: String, value: String
    )] {
        switch node {
        case .null: return []
        case .mapping(let pairs):
            var out: [(key: String, value: String)] = []
            for (name, value) in pairs {
                switch value {
                case .scalar(let text): out.append((name, text))
                case .null: out.append((name, ""))
                default: throw ReleaseError(message: "`\(key).\(name)` must be a string")
                }
            }
            return out
        default: throw ReleaseError(message: "`\(key)` must be a mapping")
        }
    }

    /// The YAML `bin/release` prints.
    public var yaml: String {
        if addons.isEmpty && configVars.isEmpty && processTypes.isEmpty { return "--- {}\n" }
        var out = "---\n"
        if !addons.isEmpty {
            out += "addons:\n" + addons.map { "  - \(YAML.quoted($0))\n" }.joined()
        }
        if !configVars.isEmpty {
            out += "config_vars:\n" + configVars.map { "  \(YAML.quoted($0.key)): \(YAML.quoted($0.value))\n" }.joined()
        }
        if !processTypes.isEmpty {
            out +=
                "default_process_types:\n"
                + processTypes.map { "  \(YAML.quoted($0.key)): \(YAML.quoted($0.value))\n" }.joined()
        }
        return out
    }
}

public struct ReleaseError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// Where a merged process type or config var came from, for the log.
public struct ReleaseProvenance: Equatable, Sendable {
    public var processTypes: [String: Int] = [:]
    public var configVars: [String: Int] = [:]
}

public enum ReleaseMode: String, Sendable { case merge, last }

/// Merges the children's releases (SPEC §7.5): key by key, a later child winning a key; addons
/// united in first-appearance order. `.last` keeps only the last child's release.
public func mergeReleases(
    _ releases: [(position: Int, release: Release)], mode: ReleaseMode, stop: StopToken = .signals
) -> (Release, ReleaseProvenance) {
    var merged = Release()
    var provenance = ReleaseProvenance()
    let considered = mode == .last ? Array(releases.suffix(1)) : releases
    // Positions by key, so that merging is linear in the number of keys however many there are.
    var configIndex: [String: Int] = [:]
    var typeIndex: [String: Int] = [:]
    var addons = Set<String>()
    for (position, release) in considered {
        for addon in release.addons where addons.insert(addon).inserted { merged.addons.append(addon) }
        // A release of 300,000 config vars takes seconds: a stop is looked for every 4096 keys.
        for (count, (key, value)) in release.configVars.enumerated() {
            if count & 4095 == 0 && StopToken.signals.isRequested { break }
            merged.configVars.upsert(key, value, index: &configIndex)
            provenance.configVars[key] = position
        }
        for (count, (key, value)) in release.processTypes.enumerated() {
            if count & 4095 == 0 && StopToken.signals.isRequested { break }
            merged.processTypes.upsert(key, value, index: &typeIndex)
            provenance.processTypes[key] = position
        }
        if stop.isRequested { break }
    }
    return (merged, provenance)
}

extension Array where Element == (key: String, value: String) {
    /// Replaces the value of `key` in place (keeping its first position) or appends it; `index`
    /// holds the position of every key in these pairs, so that n upserts cost n, not n².
    mutating func upsert(_ key: String, _ value: String, index: inout [String: Int]) {
        if let position = index[key] {
            self[position].value = value
        } else {
            index[key] = count
            append((key, value))
        }
    }

    /// These pairs with `pairs` on top: a key already here keeps its position and takes the
    /// new value, a new key is appended. Linear: a Procfile or a dotenv file of 100,000 lines
    /// must not cost 100,000² comparisons.
    func upserting(_ pairs: some Sequence<(key: String, value: String)>) -> Self {
        var result = self
        var index: [String: Int] = [:]
        for (position, pair) in enumerated() where index[pair.key] == nil { index[pair.key] = position }
        for (key, value) in pairs { result.upsert(key, value, index: &index) }
        return result
    }
}
