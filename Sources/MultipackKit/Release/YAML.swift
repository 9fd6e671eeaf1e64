/// A YAML value as buildpack releases use it.
public indirect enum YAMLNode: Equatable, Sendable {
    case null
    case scalar(String)
    case sequence([YAMLNode])
    case mapping([(key: String, value: YAMLNode)])

    public static func == (lhs: YAMLNode, rhs: YAMLNode) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case (.scalar(let a), .scalar(let b)): return a == b
        case (.sequence(let a), .sequence(let b)): return a == b
        case (.mapping(let a), .mapping(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }
}

public struct YAMLError: Error, Equatable, CustomStringConvertible {
    public var line: Int
    public var message: String
    public var description: String { "line \(line): \(message)" }
}

/// Reads `bin/release` output with libyaml (the parser Heroku's own Ruby uses), in linear time,
/// with the nesting depth and what aliases expand to bounded (SPEC §7.5).
///
/// Why not Yams: it imports the whole of Foundation (with ICU, ~40 MB more in a static binary),
/// which breaks the packaged binary's 16 MB budget; libyaml is loaded with dlopen instead.
public enum YAML {
    /// Deeper nesting than this is refused: release YAML is two levels deep.
    public static let maxDepth = 64
    /// Nodes that aliases may expand to, in all: a "billion laughs" stops here.
    public static let maxAliasNodes = 100_000

    public static func parse(_ text: String, stop: StopToken = .signals) throws(YAMLError) -> YAMLNode {
        try YAMLEvents.parse(Array(text.utf8), stop: stop)
    }

    /// A double-quoted YAML string: safe for any value.
    public static func quoted(_ value: String) -> String {
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if scalar.value < 0x20 {
                    out += "\\x" + String(scalar.value, radix: 16).leftPadded(to: 2)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

extension String {
    func leftPadded(to width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}

extension Substring {
    func trimmingTrailingBlanks() -> Substring {
        var s = self
        while let last = s.last, last == " " || last == "\t" { s = s.dropLast() }
        return s
    }

    func trimmingBlanks() -> Substring {
        var s = self.trimmingTrailingBlanks()
        while let first = s.first, first == " " || first == "\t" { s = s.dropFirst() }
        return s
    }
}
