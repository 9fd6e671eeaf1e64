/// The few things multipack reads from its own `buildpack.toml`: strings and arrays of strings,
/// under `[table]` headers. A TOML library would cost more than the file is worth: TOMLKit, the
/// maintained one, imports the whole of Foundation (ICU included, tens of MB in a static binary) and
/// links toml++; this reader covers the subset the file uses, and ignores every other value.
public struct BuildpackToml: Sendable {
    /// `table.key` → the value's strings (one for a string, any number for an array).
    public private(set) var values: [String: [String]] = [:]

    public init(_ text: String) {
        var table = ""
        var pendingKey: String?
        var pendingItems: [String] = []
        for rawLine in text.lines {
            let line = String(Self.withoutComment(rawLine)).trimmingCharacters(" ", "\t", "\r")
            if let key = pendingKey {
                // Inside a multi-line array.
                pendingItems += Self.strings(in: line)
                if line.contains("]") {
                    values[key] = pendingItems
                    pendingKey = nil
                }
                continue
            }
            if line.hasPrefix("[") {
                table = String(line.dropFirst(line.hasPrefix("[[") ? 2 : 1).prefix { $0 != "]" }).trimmingCharacters(
                    " ", "\t")
                continue
            }
            guard let equals = line.firstIndex(of: "=") else { continue }
            var key = String(line[..<equals]).trimmingCharacters(" ", "\t")
            if key.count >= 2 && key.first == "\"" && key.last == "\"" { key = String(key.dropFirst().dropLast()) }
            let value = String(line[line.index(after: equals)...]).trimmingCharacters(" ", "\t")
            let fullKey = table.isEmpty ? key : table + "." + key
            if value.hasPrefix("[") {
                pendingItems = Self.strings(in: value)
                if value.contains("]") { values[fullKey] = pendingItems } else { pendingKey = fullKey }
            } else if let string = Self.strings(in: value).first, value.hasPrefix("\"") || value.hasPrefix("'") {
                values[fullKey] = [string]
            }
        }
    }

    /// A string value, e.g. `string("buildpack", "version")`.
    public func string(_ table: String, _ key: String) -> String? { values[table + "." + key]?.first }

    /// An array of strings, e.g. `strings("publish.Ignore", "files")`.
    public func strings(_ table: String, _ key: String) -> [String] { values[table + "." + key] ?? [] }

    /// `text` with `key = "value"` under `[table]`: the key's line replaced, or added after the
    /// table's last key (a new table at the end when there is none). Comments and the rest stay.
    /// What `multipack package` writes into the archive's copy, and release.sh commits.
    public static func setting(_ table: String, _ key: String, to value: String, in text: String) -> String {
        var lines = text.lines.map(String.init)
        if lines.last == "" { lines.removeLast() }
        let assignment = "\(key) = \"\(value.replacing("\\", with: "\\\\").replacing("\"", with: "\\\""))\""
        var current = ""
        var lastKeyLine: Int?
        var headerLine: Int?
        for (index, line) in lines.enumerated() {
            let trimmed = String(withoutComment(Substring(line))).trimmingCharacters(" ", "\t", "\r")
            if trimmed.hasPrefix("[") {
                current = String(trimmed.dropFirst().prefix { $0 != "]" }).trimmingCharacters(" ", "\t")
                if current == table { headerLine = index }
                continue
            }
            guard current == table, let equals = trimmed.firstIndex(of: "=") else { continue }
            if String(trimmed[..<equals]).trimmingCharacters(" ", "\t") == key {
                lines[index] = assignment
                return lines.joined(separator: "\n") + "\n"
            }
            lastKeyLine = index
        }
        if let after = lastKeyLine ?? headerLine {
            lines.insert(assignment, at: after + 1)
        } else {
            lines += ["", "[\(table)]", assignment]
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The quoted strings on a line: basic ("…", with the common escapes) and literal ('…').
    private static func strings(in text: String) -> [String] {
        var result: [String] = []
        var iterator = text.makeIterator()
        while let c = iterator.next() {
            guard c == "\"" || c == "'" else { continue }
            var value = ""
            while let d = iterator.next(), d != c {
                if d == "\\" && c == "\"", let escaped = iterator.next() {
                    switch escaped {
                    case "n": value.append("\n")
                    case "t": value.append("\t")
                    default: value.append(escaped)
                    }
                } else {
                    value.append(d)
                }
            }
            result.append(value)
        }
        return result
    }

    /// The line up to a `#` that is not inside a string.
    private static func withoutComment(_ line: Substring) -> Substring {
        var quote: Character?
        var escaped = false
        for index in line.indices {
            let c = line[index]
            if escaped {
                escaped = false
            } else if let q = quote {
                if c == "\\" && q == "\"" { escaped = true } else if c == q { quote = nil }
            } else if c == "\"" || c == "'" {
                quote = c
            } else if c == "#" {
                return line[..<index]
            }
        }
        return line
    }
}
