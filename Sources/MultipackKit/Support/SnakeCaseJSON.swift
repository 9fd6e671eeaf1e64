import FoundationEssentials

/// The JSON multipack writes for people and scripts (`--json`, a commit's slug record): keys in
/// snake_case, sorted, pretty-printed, slashes as they are.
enum SnakeCaseJSON {
    static func text(of value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(value) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}
