/// The rules of one `.slugfilter`, compiled: each rule is a few integers, its literal bytes or
/// its glob's tokens kept in storage shared by all the rules (a few bytes per byte of the file),
/// and an index that finds the first matching rule for a path without trying each one. The rules
/// without wildcards are looked up by the path, its last component or its last N components (a
/// hash lookup each); only the wildcard rules that come before the best match so far, and whose
/// pattern's last literal byte is the path's (or that have none), are tried, in order, each
/// behind cheap checks (its literal prefix and suffix, its longest literal run) before its
/// state-set matcher runs. The answer is the first matching rule's, exactly as trying every rule
/// in order would give (rsync's exclude.c `add_rule` and `rule_matches` say what matching is).
struct SlugFilterRules: Sendable {
    /// One rule, with the flags rsync derives from its pattern.
    struct Rule: Sendable {
        var include: Bool
        var directoryOnly = false
        /// No `/` and no `**`: matched against the last component only.
        var nameOnly = false
        var anchored = false
        var wildcard = false
        /// A pattern that starts with `**` is matched against "/" + path, so `**/x` finds a top-level x.
        var leadingSlash = false
        /// A pattern ending in `***` matches a directory as "path/": `dir/***` is it and its contents.
        var trailingSlashForDirectory = false
        /// 0: the whole subject; > 0: its last N components; -1: from its start or after any `/`.
        var where_: Int32 = 0
        /// A literal rule's bytes in `bytes`, a wildcard rule's tokens in `tokens`.
        var start: Int32 = 0
        var count: Int32 = 0
        /// A wildcard rule's literal tokens at its start and its end, and its longest literal run.
        var prefix: Int32 = 0
        var suffix: Int32 = 0
        var runStart: Int32 = 0
        var runCount: Int32 = 0
    }

    /// The first rule (its position) for a key, for any path and for directories only.
    struct First: Sendable {
        var any = Int.max
        var directory = Int.max

        mutating func add(_ position: Int, directoryOnly: Bool) {
            if directoryOnly { directory = min(directory, position) } else { any = min(any, position) }
        }

        func first(isDirectory: Bool) -> Int { isDirectory ? min(any, directory) : any }
    }

    private(set) var rules: [Rule] = []
    private var bytes: [UInt8] = []
    private var tokens: [Token] = []
    private(set) var sets: [ByteSet] = []
    private var anchored: [ArraySlice<UInt8>: First] = [:]
    private var names: [ArraySlice<UInt8>: First] = [:]
    /// By N: the rules that match the last N components of a path.
    private var tails: [Int: [ArraySlice<UInt8>: First]] = [:]
    private var deepestTail = 0
    /// The wildcard rules, in order, by the last byte every text they match ends with (a path,
    /// its name and its tail all end with the same byte), and those that have none.
    private var wildcardsByLastByte: [[Int32]] = []
    private var wildcardsEndingAnyhow: [Int32] = []

    var count: Int { rules.count }

    /// Adds a rule; false when its pattern can never be read (an unclosed class, an unknown class
    /// name, a trailing `\`).
    mutating func add(include: Bool, pattern raw: ArraySlice<UInt8>) -> Bool {
        var rule = Rule(include: include)
        var pattern = raw
        let slash = UInt8(ascii: "/")
        let star = UInt8(ascii: "*")
        if pattern.count > 1 && pattern.last == slash {
            pattern.removeLast()
            rule.directoryOnly = true
        }
        let slashes = pattern.count(where: { $0 == slash })
        rule.wildcard = pattern.contains { $0 == star || $0 == UInt8(ascii: "[") || $0 == UInt8(ascii: "?") }
        let doubleStar = rule.wildcard && zip(pattern, pattern.dropFirst()).contains { $0 == star && $1 == star }
        rule.leadingSlash = doubleStar && pattern.starts(with: [star, star])
        rule.trailingSlashForDirectory = doubleStar && pattern.count >= 3 && pattern.suffix(3).allSatisfy { $0 == star }
        rule.nameOnly = slashes == 0 && !doubleStar
        rule.anchored = pattern.first == slash
        if rule.anchored { pattern.removeFirst() }
        if !rule.anchored && slashes > 0 && !doubleStar {
            rule.where_ = Int32(slashes + 1)
        } else if !rule.anchored && !rule.leadingSlash && doubleStar {
            rule.where_ = -1
        }
        if rule.wildcard {
            guard compile(pattern, into: &rule) else { return false }
        } else {
            rule.start = Int32(bytes.count)
            rule.count = Int32(pattern.count)
            bytes += pattern
        }
        rules.append(rule)
        return true
    }

    /// Reads a glob into tokens; nothing is kept of one that cannot be read.
    private mutating func compile(_ pattern: ArraySlice<UInt8>, into rule: inout Rule) -> Bool {
        let (firstToken, firstSet) = (tokens.count, sets.count)
        func fail() -> Bool {
            tokens.removeSubrange(firstToken...)
            sets.removeSubrange(firstSet...)
            return false
        }
        let pattern = Array(pattern)
        var index = 0
        while index < pattern.count {
            let byte = pattern[index]
            index += 1
            switch byte {
            case UInt8(ascii: "\\"):
                guard index < pattern.count else { return fail() }
                tokens.append(Token(.byte, pattern[index]))
                index += 1
            case UInt8(ascii: "?"):
                tokens.append(Token(.any))
            case UInt8(ascii: "*"):
                var length = 1
                while index < pattern.count && pattern[index] == UInt8(ascii: "*") {
                    length += 1
                    index += 1
                }
                tokens.append(Token(length == 1 ? .star : .doubleStar))
            case UInt8(ascii: "["):
                guard let set = ByteSet(classAt: &index, in: pattern), sets.count < 1 << 24 else { return fail() }
                tokens.append(Token(.set, index: sets.count))
                sets.append(set)
            default:
                tokens.append(Token(.byte, byte))
            }
        }
        let own = tokens[firstToken...]
        rule.start = Int32(firstToken)
        rule.count = Int32(own.count)
        rule.prefix = Int32(own.prefix { $0.kind == .byte }.count)
        if rule.prefix < rule.count { rule.suffix = Int32(own.reversed().prefix { $0.kind == .byte }.count) }
        var runStart = firstToken
        for position in own.indices where own[position].kind != .byte || position == own.endIndex - 1 {
            let end = own[position].kind == .byte ? position + 1 : position
            if end - runStart > Int(rule.runCount) {
                rule.runStart = Int32(runStart)
                rule.runCount = Int32(end - runStart)
            }
            runStart = position + 1
        }
        return true
    }

    /// Indexes the rules once they are all added.
    mutating func buildIndex() {
        wildcardsByLastByte = Array(repeating: [], count: 256)
        for (position, rule) in rules.enumerated() {
            if rule.wildcard {
                if rule.suffix > 0 {
                    wildcardsByLastByte[Int(tokens[Int(rule.start + rule.count) - 1].value)].append(Int32(position))
                } else {
                    wildcardsEndingAnyhow.append(Int32(position))
                }
                continue
            }
            let literal = bytes[Int(rule.start)..<Int(rule.start + rule.count)]
            if rule.anchored {
                anchored[literal, default: First()].add(position, directoryOnly: rule.directoryOnly)
            } else if rule.nameOnly {
                names[literal, default: First()].add(position, directoryOnly: rule.directoryOnly)
            } else {
                tails[Int(rule.where_), default: [:]][literal, default: First()]
                    .add(position, directoryOnly: rule.directoryOnly)
            }
        }
        deepestTail = tails.keys.max() ?? 0
    }

    /// The position of the first rule that matches `path` (relative, no leading `/`).
    func firstMatch(_ path: [UInt8], isDirectory: Bool) -> Int? {
        let slash = UInt8(ascii: "/")
        var best = anchored[path[...]]?.first(isDirectory: isDirectory) ?? Int.max
        if !names.isEmpty {
            let name = path.lastIndex(of: slash).map { path[($0 + 1)...] } ?? path[...]
            best = min(best, names[name]?.first(isDirectory: isDirectory) ?? Int.max)
        }
        if deepestTail > 0 {
            // Where each of the last components starts, from the end.
            var starts: [Int] = []
            var cursor = path.endIndex
            while cursor > path.startIndex && starts.count < deepestTail {
                let start = path[..<cursor].lastIndex(of: slash).map { $0 + 1 } ?? path.startIndex
                starts.append(start)
                cursor = start - 1
            }
            for (components, rules) in tails where components <= starts.count {
                best = min(best, rules[path[starts[components - 1]...]]?.first(isDirectory: isDirectory) ?? .max)
            }
        }
        // The two ordered lists of candidates, merged, up to the best literal match.
        let ending = path.last.map { wildcardsByLastByte[Int($0)] } ?? []
        let anyhow = wildcardsEndingAnyhow
        var (left, right) = (0, 0)
        while true {
            let candidate: Int32
            if left < anyhow.count, right >= ending.count || anyhow[left] < ending[right] {
                candidate = anyhow[left]
                left += 1
            } else if right < ending.count {
                candidate = ending[right]
                right += 1
            } else {
                break
            }
            if Int(candidate) >= best { break }
            let found = path.withUnsafeBufferPointer { path in
                tokens.withUnsafeBufferPointer { tokens in
                    matches(Int(candidate), path, isDirectory: isDirectory, tokens: tokens)
                }
            }
            if found { return Int(candidate) }
        }
        return best == Int.max ? nil : best
    }

    /// Whether one rule matches `path`, on its own.
    func matches(_ position: Int, _ path: [UInt8], isDirectory: Bool) -> Bool {
        path.withUnsafeBufferPointer { path in
            tokens.withUnsafeBufferPointer { matches(position, path, isDirectory: isDirectory, tokens: $0) }
        }
    }

    /// The same over buffers: the matching loops take no reference counts.
    private func matches(
        _ position: Int, _ path: UnsafeBufferPointer<UInt8>, isDirectory: Bool, tokens: UnsafeBufferPointer<Token>
    ) -> Bool {
        let rule = rules[position]
        if rule.directoryOnly && !isDirectory { return false }
        let slash = UInt8(ascii: "/")
        var subject = path[...]
        if rule.nameOnly, let last = path.lastIndex(of: slash) { subject = path[(last + 1)...] }
        guard rule.wildcard else {
            let literal = bytes[Int(rule.start)..<Int(rule.start + rule.count)]
            if rule.anchored { return subject.elementsEqual(literal) }
            guard subject.count >= literal.count, subject.suffix(literal.count).elementsEqual(literal) else {
                return false
            }
            return subject.count == literal.count || subject[subject.endIndex - literal.count - 1] == slash
        }
        if rule.where_ > 0 {
            // The last N components: start after the N-th slash from the end (rsync needs that many).
            var remaining = Int(rule.where_)
            var start = subject.endIndex
            while start > subject.startIndex {
                if subject[start - 1] == slash {
                    remaining -= 1
                    if remaining == 0 { break }
                }
                start -= 1
            }
            if remaining > 1 { return false }
            return glob(rule, matches: Text(subject: subject[start...]), restartAfterSlash: false, tokens: tokens)
        }
        // The text rsync matches: "/" first for a leading `**`, "/" last for a directory and `***`.
        let text = Text(
            subject: subject, leadingSlash: rule.leadingSlash,
            trailingSlash: isDirectory && rule.trailingSlashForDirectory)
        return glob(rule, matches: text, restartAfterSlash: rule.where_ < 0, tokens: tokens)
    }
}
