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
