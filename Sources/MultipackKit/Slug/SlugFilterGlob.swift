/// The glob side of `.slugfilter`'s rules: tokens, the text they are matched against, and the
/// matcher (rsync's wildmatch as a set of states).
extension SlugFilterRules {
    /// A glob token in 32 bits: its kind, and its byte or its class's index.
    struct Token: Sendable {
        enum Kind: UInt32 { case byte, any, set, star, doubleStar }
        private var raw: UInt32

        init(_ kind: Kind, _ byte: UInt8 = 0) { raw = kind.rawValue << 24 | UInt32(byte) }
        init(_ kind: Kind, index: Int) { raw = kind.rawValue << 24 | UInt32(index) }

        var kind: Kind { Kind(rawValue: raw >> 24)! }
        var value: UInt32 { raw & 0xff_ffff }
        var isStar: Bool { raw >> 24 >= Kind.star.rawValue }
    }

    /// The text a pattern is matched against, without copying it: an optional `/` before the
    /// subject's bytes and one after.
    struct Text {
        var subject: Slice<UnsafeBufferPointer<UInt8>>
        var leadingSlash = false
        var trailingSlash = false

        var count: Int { subject.count + (leadingSlash ? 1 : 0) + (trailingSlash ? 1 : 0) }

        /// The byte at `offset` from the start (0 ..< count).
        subscript(offset: Int) -> UInt8 {
            var offset = offset
            if leadingSlash {
                if offset == 0 { return UInt8(ascii: "/") }
                offset -= 1
            }
            return offset < subject.count ? subject[subject.startIndex + offset] : UInt8(ascii: "/")
        }
    }

    private func accepts(_ token: Token, _ byte: UInt8) -> Bool {
        switch token.kind {
        case .byte: byte == UInt8(token.value)
        case .any: byte != UInt8(ascii: "/")
        case .set: sets[Int(token.value)].contains(byte)
        case .star, .doubleStar: false
        }
    }

    /// rsync's wildmatch, run as a set of states over the text (no backtracking, so a hostile
    /// pattern costs pattern × text steps at most): `*` any run without `/`, `**` any run, `?` one
    /// byte but `/`, `[...]` a class (never `/`), `\` escapes. With `restartAfterSlash`, a match
    /// may also start after any `/`. Every match ends with the literal suffix and holds the
    /// longest literal run (and, without restarts, starts with the literal prefix): those are
    /// checked first.
    func glob(_ rule: Rule, matches text: Text, restartAfterSlash: Bool, tokens: UnsafeBufferPointer<Token>) -> Bool {
        let count = text.count
        let (first, end) = (Int(rule.start), Int(rule.start + rule.count))
        let suffix = Int(rule.suffix)
        guard suffix <= count,
            (0..<suffix).allSatisfy({ tokens[end - suffix + $0].value == UInt32(text[count - suffix + $0]) })
        else { return false }
        if !restartAfterSlash {
            let prefix = Int(rule.prefix)
            guard prefix <= count, (0..<prefix).allSatisfy({ tokens[first + $0].value == UInt32(text[$0]) }) else {
                return false
            }
        }
        if rule.runCount > max(rule.prefix, rule.suffix),
            !holdsRun(tokens[Int(rule.runStart)..<Int(rule.runStart + rule.runCount)], text)
        {
            return false
        }
        return rule.count < 64
            ? matchesInWord(tokens[first..<end], text, restartAfterSlash)
            : matchesInArrays(tokens[first..<end], text, restartAfterSlash)
    }

    /// Whether the literal `run` appears in the text.
    private func holdsRun(_ run: Slice<UnsafeBufferPointer<Token>>, _ text: Text) -> Bool {
        guard run.count <= text.count, let head = run.first.map({ UInt8($0.value) }) else { return run.isEmpty }
        for start in 0...(text.count - run.count) where text[start] == head {
            var offset = 1
            while offset < run.count && run[run.startIndex + offset].value == UInt32(text[start + offset]) {
                offset += 1
            }
            if offset == run.count { return true }
        }
        return false
    }

    /// The states as the bits of one word: bit i set when the first i tokens have matched.
    private func matchesInWord(_ tokens: Slice<UnsafeBufferPointer<Token>>, _ text: Text, _ restartAfterSlash: Bool)
        -> Bool
    {
        let base = tokens.startIndex
        let final: UInt64 = 1 << UInt64(tokens.count)
        var stars: UInt64 = 0
        for index in tokens.indices where tokens[index].isStar { stars |= 1 << UInt64(index - base) }
        // A star may match nothing: its state passes on to the next, and so on along a run of stars.
        func closure(_ states: UInt64) -> UInt64 {
            var states = states
            while true {
                let more = states | ((states & stars) << 1)
                if more == states { return states }
                states = more
            }
        }
        let start = closure(1)
        var current = start
        for offset in 0..<text.count {
            let byte = text[offset]
            var next: UInt64 = 0
            var live = current & ~final
            while live != 0 {
                let state = live.trailingZeroBitCount
                live &= live - 1
                let token = tokens[base + state]
                switch token.kind {
                case .star: if byte != UInt8(ascii: "/") { next |= 1 << UInt64(state) }
                case .doubleStar: next |= 1 << UInt64(state)
                default: if accepts(token, byte) { next |= 1 << UInt64(state + 1) }
                }
            }
            next = closure(next)
            if restartAfterSlash && byte == UInt8(ascii: "/") { next |= start }
            // Nothing left alive: no later byte can revive a state (a restart needs a `/`).
            if !restartAfterSlash && next == 0 { return false }
            current = next
        }
        return current & final != 0
    }

    /// The same for patterns of 64 tokens or more, with a flag per state.
    private func matchesInArrays(
        _ tokens: Slice<UnsafeBufferPointer<Token>>, _ text: Text, _ restartAfterSlash: Bool
    ) -> Bool {
        let base = tokens.startIndex
        let count = tokens.count
        var current = [Bool](repeating: false, count: count + 1)
        var next = current
        func enter(_ state: Int, _ states: inout [Bool]) {
            var state = state
            while !states[state] {
                states[state] = true
                guard state < count, tokens[base + state].isStar else { return }
                state += 1
            }
        }
        enter(0, &current)
        for offset in 0..<text.count {
            let byte = text[offset]
            for state in 0...count { next[state] = false }
            for state in 0..<count where current[state] {
                let token = tokens[base + state]
                switch token.kind {
                case .star: if byte != UInt8(ascii: "/") { enter(state, &next) }
                case .doubleStar: enter(state, &next)
                default: if accepts(token, byte) { enter(state + 1, &next) }
                }
            }
            if restartAfterSlash && byte == UInt8(ascii: "/") { enter(0, &next) }
            if !restartAfterSlash && !next.contains(true) { return false }
            swap(&current, &next)
        }
        return current[count]
    }
}
