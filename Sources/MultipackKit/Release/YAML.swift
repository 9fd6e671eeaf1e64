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

/// Reads the part of YAML that `bin/release` output uses: block mappings and sequences, flow
/// `[...]`/`{...}`, plain, quoted and `|`/`>` scalars, comments, `---`.
///
/// Why not Yams: it imports the whole of Foundation (with ICU, ~40 MB more in a static binary),
/// which breaks the packaged binary's 16 MB budget; libyaml itself is not on Heroku's stacks.
public enum YAML {
    public static func parse(_ text: String) throws(YAMLError) -> YAMLNode {
        var parser = BlockParser(lines: Line.split(text))
        guard parser.index < parser.lines.count else { return .null }
        let node = try parser.block(indent: parser.lines[parser.index].indent)
        if parser.index < parser.lines.count {
            throw YAMLError(line: parser.lines[parser.index].number, message: "unexpected indentation")
        }
        return node
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

private struct Line {
    var number: Int
    var indent: Int
    var content: Substring
    var raw: Substring

    static func split(_ text: String) -> [Line] {
        var lines: [Line] = []
        for (offset, rawLine) in text.lines.enumerated() {
            var raw = rawLine
            if raw.last == "\r" { raw = raw.dropLast() }
            let indent = raw.prefix(while: { $0 == " " }).count
            let content = stripComment(raw.dropFirst(indent))
            let trimmed = content.trimmingTrailingBlanks()
            if trimmed.isEmpty { continue }
            if indent == 0 && (trimmed == "---" || trimmed == "...") { continue }
            if indent == 0 && trimmed.hasPrefix("--- ") {
                lines.append(Line(number: offset + 1, indent: 4, content: trimmed.dropFirst(4), raw: raw))
                continue
            }
            lines.append(Line(number: offset + 1, indent: indent, content: trimmed, raw: raw))
        }
        return lines
    }

    /// `#` starts a comment at the start or after a blank, outside quotes.
    static func stripComment(_ text: Substring) -> Substring {
        var quote: Character?
        var previous: Character = " "
        var escaped = false
        for index in text.indices {
            let c = text[index]
            if let open = quote {
                if escaped {
                    escaped = false
                } else if c == "\\" && open == "\"" {
                    escaped = true
                } else if c == open {
                    quote = nil
                }
            } else if c == "\"" || c == "'" {
                if previous == " " || previous == "\t" || previous == ":" || previous == "[" || previous == "{"
                    || previous == "," || previous == "-"
                {
                    quote = c
                }
            } else if c == "#" && (previous == " " || previous == "\t") {
                return text[..<index]
            }
            previous = c
        }
        return text
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

private struct BlockParser {
    var lines: [Line]
    var index = 0

    mutating func block(indent: Int) throws(YAMLError) -> YAMLNode {
        let line = lines[index]
        if line.content.hasPrefix("\t") {
            throw YAMLError(line: line.number, message: "tabs are not allowed for indentation")
        }
        if isSequenceItem(line.content) { return try sequence(indent: indent) }
        if try splitKey(line) != nil { return try mapping(indent: indent) }
        index += 1
        return try inline(line.content, line: line.number)
    }

    func isSequenceItem(_ content: Substring) -> Bool { content == "-" || content.hasPrefix("- ") }

    mutating func sequence(indent: Int) throws(YAMLError) -> YAMLNode {
        var items: [YAMLNode] = []
        while index < lines.count, lines[index].indent == indent, isSequenceItem(lines[index].content) {
            let line = lines[index]
            let rest = line.content.dropFirst(1).trimmingBlanks()
            if rest.isEmpty {
                index += 1
                items.append(try nested(parentIndent: indent, allowSameIndentSequence: false))
            } else {
                // "- key: value" opens a mapping whose keys sit two columns further in.
                let offset = line.content.count - rest.count
                lines[index] = Line(number: line.number, indent: indent + offset, content: rest, raw: line.raw)
                items.append(try block(indent: indent + offset))
            }
        }
        return .sequence(items)
    }

    mutating func mapping(indent: Int) throws(YAMLError) -> YAMLNode {
        var pairs: [(key: String, value: YAMLNode)] = []
        while index < lines.count, lines[index].indent == indent {
            let line = lines[index]
            guard let (key, rest) = try splitKey(line) else {
                throw YAMLError(line: line.number, message: "expected `key: value`, found `\(line.content)`")
            }
            if pairs.contains(where: { $0.key == key }) {
                throw YAMLError(line: line.number, message: "duplicate key `\(key)`")
            }
            index += 1
            let value: YAMLNode
            if rest.isEmpty {
                value = try nested(parentIndent: indent, allowSameIndentSequence: true)
            } else if rest.first == "|" || rest.first == ">" {
                value = blockScalar(folded: rest.first == ">", parentIndent: indent, chomp: rest.dropFirst())
            } else {
                value = try inline(rest, line: line.number)
            }
            pairs.append((key, value))
        }
        if index < lines.count, lines[index].indent > indent {
            throw YAMLError(line: lines[index].number, message: "unexpected indentation")
        }
        return .mapping(pairs)
    }

    mutating func nested(parentIndent: Int, allowSameIndentSequence: Bool) throws(YAMLError) -> YAMLNode {
        guard index < lines.count else { return .null }
        let next = lines[index]
        if next.indent > parentIndent { return try block(indent: next.indent) }
        if allowSameIndentSequence, next.indent == parentIndent, isSequenceItem(next.content) {
            return try sequence(indent: parentIndent)
        }
        return .null
    }

    mutating func blockScalar(folded: Bool, parentIndent: Int, chomp: Substring) -> YAMLNode {
        var parts: [Substring] = []
        var contentIndent: Int?
        while index < lines.count, lines[index].indent > parentIndent {
            let line = lines[index]
            let indent = contentIndent ?? line.indent
            contentIndent = indent
            parts.append(line.raw.dropFirst(Swift.min(indent, line.indent)))
            index += 1
        }
        var text = parts.joined(separator: folded ? " " : "\n")
        if !chomp.contains("-") && !parts.isEmpty { text += "\n" }
        return .scalar(text)
    }

    /// `key: rest` when the line is a mapping entry.
    func splitKey(_ line: Line) throws(YAMLError) -> (String, Substring)? {
        let content = line.content
        if let first = content.first, first == "\"" || first == "'" {
            var cursor = FlowCursor(text: content, line: line.number)
            let key = try cursor.quoted()
            let rest = content[cursor.position...]
            guard rest.first == ":" else { return nil }
            let after = rest.dropFirst()
            guard after.isEmpty || after.first == " " else { return nil }
            return (key, after.trimmingBlanks())
        }
        if content.first == "[" || content.first == "{" { return nil }
        var index = content.startIndex
        while index < content.endIndex {
            if content[index] == ":" {
                let after = content[content.index(after: index)...]
                if after.isEmpty || after.first == " " {
                    let key = content[..<index].trimmingBlanks()
                    return key.isEmpty ? nil : (String(key), after.trimmingBlanks())
                }
            }
            index = content.index(after: index)
        }
        return nil
    }

    func inline(_ text: Substring, line: Int) throws(YAMLError) -> YAMLNode {
        var cursor = FlowCursor(text: text, line: line)
        let node = try cursor.value(inFlow: false)
        cursor.skipBlanks()
        guard cursor.atEnd else {
            throw YAMLError(line: line, message: "unexpected `\(text[cursor.position...])`")
        }
        return node
    }
}

private struct FlowCursor {
    var text: Substring
    var line: Int
    var position: Substring.Index

    init(text: Substring, line: Int) {
        self.text = text
        self.line = line
        self.position = text.startIndex
    }

    var atEnd: Bool { position >= text.endIndex }
    var current: Character? { atEnd ? nil : text[position] }

    mutating func advance() { position = text.index(after: position) }

    mutating func skipBlanks() {
        while let c = current, c == " " || c == "\t" { advance() }
    }

    func fail(_ message: String) -> YAMLError { YAMLError(line: line, message: message) }

    mutating func value(inFlow: Bool) throws(YAMLError) -> YAMLNode {
        skipBlanks()
        switch current {
        case "[": return try flowSequence()
        case "{": return try flowMapping()
        case "\"", "'": return .scalar(try quoted())
        case nil: return .null
        default:
            let stops: Set<Character> = inFlow ? [",", "]", "}"] : []
            var end = position
            while end < text.endIndex, !stops.contains(text[end]) {
                if inFlow, text[end] == ":",
                    text.index(after: end) == text.endIndex
                        || text[text.index(after: end)] == " "
                {
                    break
                }
                end = text.index(after: end)
            }
            let plain = text[position..<end].trimmingBlanks()
            position = end
            if plain == "~" || plain == "null" || plain.isEmpty { return .null }
            if plain.first == "&" || plain.first == "*" || plain.first == "!" || plain.first == "%" {
                throw fail("anchors, aliases, tags and directives are not supported (`\(plain)`)")
            }
            return .scalar(String(plain))
        }
    }

    /// A quoted scalar, read scalar by scalar: a combining mark after an escape's hex digit
    /// must not merge with it into one Character.
    mutating func quoted() throws(YAMLError) -> String {
        let scalars = text.unicodeScalars
        var index = position
        guard index < scalars.endIndex else { throw fail("expected a quoted string") }
        let open = scalars[index]
        index = scalars.index(after: index)
        var out = String.UnicodeScalarView()
        func next() -> Unicode.Scalar? {
            guard index < scalars.endIndex else { return nil }
            defer { index = scalars.index(after: index) }
            return scalars[index]
        }
        while let c = next() {
            if open == "'" {
                if c == "'" {
                    if index < scalars.endIndex, scalars[index] == "'" {
                        index = scalars.index(after: index)
                        out.append("'")
                        continue
                    }
                    position = index
                    return String(out)
                }
                out.append(c)
                continue
            }
            if c == "\"" {
                position = index
                return String(out)
            }
            guard c == "\\" else {
                out.append(c)
                continue
            }
            guard let escaped = next() else { break }
            switch escaped {
            case "n": out.append("\n")
            case "t": out.append("\t")
            case "r": out.append("\r")
            case "0": out.append("\0")
            case "\"", "\\", "/", " ": out.append(escaped)
            case "x", "u", "U":
                let width = escaped == "x" ? 2 : escaped == "u" ? 4 : 8
                var value: UInt32 = 0
                for _ in 0..<width {
                    guard let h = next(), let digit = h.isASCII ? Int(String(h), radix: 16) : nil
                    else { throw fail("bad escape in a quoted string") }
                    value = value * 16 + UInt32(digit)
                }
                guard let scalar = Unicode.Scalar(value) else { throw fail("bad escape in a quoted string") }
                out.append(scalar)
            default: throw fail("unknown escape `\\\(escaped)` in a quoted string")
            }
        }
        throw fail("a quoted string is not closed")
    }

    mutating func flowSequence() throws(YAMLError) -> YAMLNode {
        advance()
        var items: [YAMLNode] = []
        while true {
            skipBlanks()
            if current == "]" {
                advance()
                return .sequence(items)
            }
            items.append(try value(inFlow: true))
            skipBlanks()
            if current == "," {
                advance()
            } else if current != "]" {
                throw fail("expected `,` or `]` in a flow sequence")
            }
        }
    }

    mutating func flowMapping() throws(YAMLError) -> YAMLNode {
        advance()
        var pairs: [(key: String, value: YAMLNode)] = []
        while true {
            skipBlanks()
            if current == "}" {
                advance()
                return .mapping(pairs)
            }
            guard case .scalar(let key) = try value(inFlow: true) else {
                throw fail("expected a key in a flow mapping")
            }
            skipBlanks()
            guard current == ":" else { throw fail("expected `:` after `\(key)` in a flow mapping") }
            advance()
            skipBlanks()
            let node: YAMLNode = (current == "," || current == "}") ? .null : try value(inFlow: true)
            if pairs.contains(where: { $0.key == key }) { throw fail("duplicate key `\(key)`") }
            pairs.append((key, node))
            skipBlanks()
            if current == "," {
                advance()
            } else if current != "}" {
                throw fail("expected `,` or `}` in a flow mapping")
            }
        }
    }
}
