import FoundationEssentials
import Glibc

/// `.slugfilter` (SPEC §14): rsync filter rules, `- PATTERN` and `+ PATTERN`, applied to BUILD_DIR
/// after `post_compile`. The rules decide as rsync's sender does: for each path, from the top
/// down, the first rule that matches wins; an excluded directory goes whole, unread.
public struct SlugFilter: Sendable {
    /// Kept whatever the rules say: rsync sees them as `+ /NAME` lines ahead of the file's own.
    static let kept = [".slugfilter", ".buildpacks", ".buildpacks.lock"]

    var rules: [SlugFilterRule]
    /// Lines whose pattern ends in blanks: rsync keeps them, which is rarely what was meant.
    public private(set) var trailingBlankLines: [Int] = []

    public init(_ text: String) throws(MultipackError) {
        try self.init(bytes: Array(text.utf8))
    }

    /// Reads the rules as bytes, as rsync does: a pattern need not be UTF-8, as file names need not.
    init(bytes text: [UInt8]) throws(MultipackError) {
        rules = Self.kept.map { SlugFilterRule(include: true, pattern: Array("/\($0)".utf8))! }
        var text = text[...]
        if text.starts(with: [0xEF, 0xBB, 0xBF]) { text = text.dropFirst(3) }
        for (index, fullLine) in text.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() {
            // rsync ends a line at CR as well as at LF, so CRLF files read the same.
            for line in fullLine.split(separator: 0x0D, omittingEmptySubsequences: false) {
                try add(Array(line), number: index + 1)
            }
        }
    }

    private mutating func add(_ bytes: [UInt8], number: Int) throws(MultipackError) {
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { return }
        if bytes[0] == UInt8(ascii: "#") || bytes[0] == UInt8(ascii: ";") { return }
        let shown = String(decoding: bytes, as: UTF8.self)
        guard bytes.count > 2, bytes[0] == UInt8(ascii: "-") || bytes[0] == UInt8(ascii: "+"),
            bytes[1] == 0x20 || bytes[1] == UInt8(ascii: "_")
        else {
            throw Self.badLine(number, shown, "a rule is `- PATTERN` (delete) or `+ PATTERN` (keep)")
        }
        let pattern = Array(bytes[2...])
        guard let rule = SlugFilterRule(include: bytes[0] == UInt8(ascii: "+"), pattern: pattern) else {
            throw Self.badLine(
                number, shown, "its pattern has an unclosed `[`, an unknown `[:class:]` or a lone trailing `\\`")
        }
        if pattern.last == 0x20 || pattern.last == 0x09 { trailingBlankLines.append(number) }
        rules.append(rule)
    }

    /// The app's `.slugfilter`, parsed; nil when it has none.
    static func read(_ buildDir: String) throws -> SlugFilter? {
        let path = buildDir + "/.slugfilter"
        guard Files.exists(path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FileError(path: path, action: "read", errno: errno)
        }
        return try SlugFilter(bytes: Array(data))
    }

    /// True when the file has no rules beyond the built-in ones.
    public var isEmpty: Bool { rules.count == Self.kept.count }

    /// Whether `path` (relative to BUILD_DIR, no leading `/`) is kept.
    func keeps(_ path: [UInt8], isDirectory: Bool) -> Bool {
        for rule in rules where rule.matches(path, isDirectory: isDirectory) { return rule.include }
        return true
    }

    private static func badLine(_ number: Int, _ line: String, _ reason: String) -> MultipackError {
        MultipackError.usage(
            ".slugfilter line \(number) is not a filter rule: \(line)",
            hint:
                "Fix line \(number): \(reason); `#` starts a comment. See \"Trimming the slug\" in multipack's README.")
    }
}

/// One rule, with the flags rsync derives from its pattern (exclude.c `add_rule`, `rule_matches`).
struct SlugFilterRule: Sendable {
    var include: Bool
    var directoryOnly = false
    /// No `/` and no `**`: matched against the last component only.
    var nameOnly: Bool
    var anchored: Bool
    var wildcard: Bool
    /// rsync matches a pattern that starts with `**` against "/" + path, so that `**/x` finds a top-level x.
    var leadingSlash: Bool
    /// A pattern ending in `***` matches a directory as "path/", so `dir/***` is the directory and its contents.
    var trailingSlashForDirectory: Bool
    /// 0: the whole subject; > 0: its last N components; -1: from its start or after any `/`.
    var where_: Int
    var glob: Glob
    var literal: [UInt8]

    /// nil when the pattern can never be read (unclosed class, unknown class name, trailing `\`).
    init?(include: Bool, pattern raw: [UInt8]) {
        self.include = include
        var pattern = raw
        if pattern.count > 1 && pattern.last == UInt8(ascii: "/") {
            pattern.removeLast()
            directoryOnly = true
        }
        let slashes = pattern.count(where: { $0 == UInt8(ascii: "/") })
        wildcard = pattern.contains { $0 == UInt8(ascii: "*") || $0 == UInt8(ascii: "[") || $0 == UInt8(ascii: "?") }
        let star = UInt8(ascii: "*")
        let doubleStar =
            wildcard && pattern.indices.dropLast().contains { pattern[$0] == star && pattern[$0 + 1] == star }
        leadingSlash = doubleStar && pattern.starts(with: [star, star])
        trailingSlashForDirectory = doubleStar && pattern.count >= 3 && pattern.suffix(3).allSatisfy { $0 == star }
        nameOnly = slashes == 0 && !doubleStar
        anchored = pattern.first == UInt8(ascii: "/")
        if anchored { pattern.removeFirst() }
        if !anchored && slashes > 0 && !doubleStar {
            where_ = slashes + 1
        } else if !anchored && !leadingSlash && doubleStar {
            where_ = -1
        } else {
            where_ = 0
        }
        literal = pattern
        if wildcard {
            guard let glob = Glob(pattern) else { return nil }
            self.glob = glob
        } else {
            glob = Glob(literal: pattern)
        }
    }

    func matches(_ path: [UInt8], isDirectory: Bool) -> Bool {
        if directoryOnly && !isDirectory { return false }
        var subject = path[...]
        if nameOnly, let slash = path.lastIndex(of: UInt8(ascii: "/")) { subject = path[(slash + 1)...] }
        guard wildcard else {
            if anchored { return subject.elementsEqual(literal) }
            guard subject.count >= literal.count, subject.suffix(literal.count).elementsEqual(literal) else {
                return false
            }
            return subject.count == literal.count
                || subject[subject.endIndex - literal.count - 1] == UInt8(ascii: "/")
        }
        var text: [UInt8] = []
        text.reserveCapacity(subject.count + 2)
        if leadingSlash { text.append(UInt8(ascii: "/")) }
        text += subject
        if isDirectory && trailingSlashForDirectory { text.append(UInt8(ascii: "/")) }
        if where_ > 0 {
            // The last N components: start after the N-th slash from the end (rsync needs that many).
            var remaining = where_
            var start = text.endIndex
            while start > text.startIndex {
                if text[start - 1] == UInt8(ascii: "/") {
                    remaining -= 1
                    if remaining == 0 { break }
                }
                start -= 1
            }
            if remaining > 1 { return false }
            return glob.matches(text[start...], restartAfterSlash: false)
        }
        return glob.matches(text[...], restartAfterSlash: where_ < 0)
    }
}

/// rsync's wildmatch, run as a set of states over the text (no backtracking, so a hostile pattern
/// costs pattern × text steps at most): `*` any run without `/`, `**` any run, `?` one byte but
/// `/`, `[...]` a class (`!` or `^` negates; ranges; `[:alpha:]`…; never `/`), `\` escapes.
struct Glob: Sendable {
    enum Token: Sendable {
        case byte(UInt8)
        case any
        case set(ByteSet)
        case star
        case doubleStar
    }

    var tokens: [Token] = []

    init(literal: [UInt8]) {
        tokens = literal.map(Token.byte)
    }

    init?(_ pattern: [UInt8]) {
        var index = 0
        while index < pattern.count {
            let byte = pattern[index]
            index += 1
            switch byte {
            case UInt8(ascii: "\\"):
                guard index < pattern.count else { return nil }
                tokens.append(.byte(pattern[index]))
                index += 1
            case UInt8(ascii: "?"):
                tokens.append(.any)
            case UInt8(ascii: "*"):
                var run = 1
                while index < pattern.count && pattern[index] == UInt8(ascii: "*") {
                    run += 1
                    index += 1
                }
                tokens.append(run == 1 ? .star : .doubleStar)
            case UInt8(ascii: "["):
                guard let set = ByteSet(classAt: &index, in: pattern) else { return nil }
                tokens.append(.set(set))
            default:
                tokens.append(.byte(byte))
            }
        }
    }

    /// Whether the whole text matches; with `restartAfterSlash`, also a match starting after any `/`.
    func matches(_ text: ArraySlice<UInt8>, restartAfterSlash: Bool) -> Bool {
        let count = tokens.count
        var current = [Bool](repeating: false, count: count + 1)
        var next = current
        func enter(_ state: Int, _ states: inout [Bool]) {
            var state = state
            while !states[state] {
                states[state] = true
                guard state < count else { return }
                switch tokens[state] {
                case .star, .doubleStar: state += 1
                default: return
                }
            }
        }
        enter(0, &current)
        for byte in text {
            for state in 0...count { next[state] = false }
            for state in 0..<count where current[state] {
                switch tokens[state] {
                case .byte(let expected):
                    if byte == expected { enter(state + 1, &next) }
                case .any:
                    if byte != UInt8(ascii: "/") { enter(state + 1, &next) }
                case .set(let set):
                    if set.contains(byte) { enter(state + 1, &next) }
                case .star:
                    if byte != UInt8(ascii: "/") { enter(state, &next) }
                case .doubleStar:
                    enter(state, &next)
                }
            }
            if restartAfterSlash && byte == UInt8(ascii: "/") { enter(0, &next) }
            // Nothing left alive: no later byte can revive a state (a restart needs a `/`).
            if !restartAfterSlash && !next.contains(true) { return false }
            swap(&current, &next)
        }
        return current[count]
    }
}

/// A `[...]` class as rsync's wildmatch reads it, as 256 bits.
struct ByteSet: Sendable {
    var bits: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    func contains(_ byte: UInt8) -> Bool {
        let word: UInt64
        switch byte >> 6 {
        case 0: word = bits.0
        case 1: word = bits.1
        case 2: word = bits.2
        default: word = bits.3
        }
        return word & (1 << UInt64(byte & 63)) != 0
    }

    mutating func insert(_ byte: UInt8) {
        let bit: UInt64 = 1 << UInt64(byte & 63)
        switch byte >> 6 {
        case 0: bits.0 |= bit
        case 1: bits.1 |= bit
        case 2: bits.2 |= bit
        default: bits.3 |= bit
        }
    }

    /// Reads the class whose `[` is just before `index`; leaves `index` after its `]`.
    init?(classAt index: inout Int, in pattern: [UInt8]) {
        func at(_ i: Int) -> UInt8 { i < pattern.count ? pattern[i] : 0 }
        var p = index
        var negated = false
        if at(p) == UInt8(ascii: "!") || at(p) == UInt8(ascii: "^") {
            negated = true
            p += 1
        }
        var members = ByteSet()
        var previous: UInt8 = 0
        // As wildmatch's do-while: the first byte is a member even when it is `]`.
        repeat {
            var byte = at(p)
            if byte == 0 { return nil }
            if byte == UInt8(ascii: "\\") {
                p += 1
                byte = at(p)
                if byte == 0 { return nil }
                members.insert(byte)
            } else if byte == UInt8(ascii: "-") && previous != 0 && at(p + 1) != 0 && at(p + 1) != UInt8(ascii: "]") {
                p += 1
                var upper = at(p)
                if upper == UInt8(ascii: "\\") {
                    p += 1
                    upper = at(p)
                    if upper == 0 { return nil }
                }
                if previous <= upper { for value in previous...upper { members.insert(value) } }
                byte = 0
            } else if byte == UInt8(ascii: "[") && at(p + 1) == UInt8(ascii: ":") {
                let start = p + 2
                var end = start
                while at(end) != 0 && at(end) != UInt8(ascii: "]") { end += 1 }
                if at(end) == 0 { return nil }
                if end - start - 1 < 0 || at(end - 1) != UInt8(ascii: ":") {
                    // No ":]": the `[` is an ordinary member and reading goes on after it.
                    members.insert(byte)
                } else {
                    guard let test = Self.named[String(decoding: pattern[start..<(end - 1)], as: UTF8.self)] else {
                        return nil
                    }
                    for value in UInt8(0)...127 where test(value) { members.insert(value) }
                    p = end
                    byte = 0
                }
            } else {
                members.insert(byte)
            }
            previous = byte
            p += 1
        } while at(p) != UInt8(ascii: "]")
        index = p + 1
        if negated {
            for value in UInt8(0)...255 where !members.contains(value) { insert(value) }
        } else {
            self = members
        }
        // wildmatch never lets a class match `/`.
        if contains(UInt8(ascii: "/")) {
            let bit: UInt64 = 1 << UInt64(UInt8(ascii: "/") & 63)
            bits.0 &= ~bit
        }
    }

    init() {}

    /// POSIX classes, ASCII only as in wildmatch.
    static let named: [String: @Sendable (UInt8) -> Bool] = [
        "alnum": { isLetter($0) || isDigit($0) }, "alpha": { isLetter($0) }, "blank": { $0 == 0x20 || $0 == 0x09 },
        "cntrl": { $0 < 0x20 || $0 == 0x7f }, "digit": { isDigit($0) }, "graph": { $0 > 0x20 && $0 < 0x7f },
        "lower": { $0 >= 0x61 && $0 <= 0x7a }, "print": { $0 >= 0x20 && $0 < 0x7f },
        "punct": { $0 > 0x20 && $0 < 0x7f && !isLetter($0) && !isDigit($0) },
        "space": { $0 == 0x20 || ($0 >= 0x09 && $0 <= 0x0d) }, "upper": { $0 >= 0x41 && $0 <= 0x5a },
        "xdigit": { isDigit($0) || (($0 | 0x20) >= 0x61 && ($0 | 0x20) <= 0x66) },
    ]

    private static func isLetter(_ byte: UInt8) -> Bool { (byte | 0x20) >= 0x61 && (byte | 0x20) <= 0x7a }
    private static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }
}
