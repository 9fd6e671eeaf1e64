/// Bash's own account of the variables it exports, `declare -px`, read back: one builtin call
/// where a loop over every variable name cost a sourced export 1.4 ms of its 2.5 (SPEC §18).
///
/// Each line is `declare -FLAGS NAME`, or `declare -FLAGS NAME=VALUE` with the value in one of the
/// two quotings bash writes: `"…"` with `\`, `"`, `$` and `` ` `` escaped (printable values), or
/// `$'…'` with C escapes (any other). Arrays and variables exported without a value are not in the
/// environment bash hands on, so they are left out, as they would be from a process's environment.
enum DeclaredVariables {
    /// The exported variables, or nil when the text is not what `declare -px` prints.
    static func parse(_ text: ArraySlice<UInt8>) -> [String: String]? {
        var reader = Reader(bytes: text)
        var variables: [String: String] = [:]
        while !reader.atEnd {
            guard reader.skip("declare -"), let flags = reader.word(until: UInt8(ascii: " ")),
                let name = reader.name()
            else { return nil }
            let isArray = flags.contains(UInt8(ascii: "a")) || flags.contains(UInt8(ascii: "A"))
            if reader.skip("=") {
                if isArray {
                    guard reader.skipArray() else { return nil }
                } else {
                    guard let value = reader.quotedValue() else { return nil }
                    variables[name] = String(decoding: value, as: UTF8.self)
                }
            }
            guard reader.skip("\n") else { return nil }
        }
        return variables
    }

    private struct Reader {
        var bytes: ArraySlice<UInt8>
        var atEnd: Bool { bytes.isEmpty }

        mutating func skip(_ literal: StaticString) -> Bool {
            let expected = UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount)
            guard bytes.starts(with: expected) else { return false }
            bytes.removeFirst(expected.count)
            return true
        }

        mutating func word(until end: UInt8) -> ArraySlice<UInt8>? {
            guard let index = bytes.firstIndex(of: end) else { return nil }
            defer { bytes = bytes[(index + 1)...] }
            return bytes[..<index]
        }

        /// A shell name: what follows is `=` or the end of the line.
        mutating func name() -> String? {
            let end = bytes.firstIndex { $0 == UInt8(ascii: "=") || $0 == UInt8(ascii: "\n") } ?? bytes.endIndex
            guard end > bytes.startIndex else { return nil }
            defer { bytes = bytes[end...] }
            return String(decoding: bytes[..<end], as: UTF8.self)
        }

        mutating func quotedValue() -> [UInt8]? {
            if skip("\"") { return doubleQuoted() }
            if skip("$'") { return ansiCQuoted() }
            return nil
        }

        /// `"…"`: a backslash escapes the next byte (bash escapes only `\ " $ ``).
        private mutating func doubleQuoted() -> [UInt8]? {
            var value: [UInt8] = []
            while let byte = bytes.popFirst() {
                switch byte {
                case UInt8(ascii: "\""): return value
                case UInt8(ascii: "\\"):
                    guard let next = bytes.popFirst() else { return nil }
                    if ![UInt8(ascii: "\\"), UInt8(ascii: "\""), UInt8(ascii: "$"), UInt8(ascii: "`")].contains(next) {
                        value.append(byte)
                    }
                    value.append(next)
                default: value.append(byte)
                }
            }
            return nil
        }

        /// `$'…'`: C escapes, as bash's `$'…'` reads them.
        private mutating func ansiCQuoted() -> [UInt8]? {
            var value: [UInt8] = []
            while let byte = bytes.popFirst() {
                if byte == UInt8(ascii: "'") { return value }
                guard byte == UInt8(ascii: "\\") else {
                    value.append(byte)
                    continue
                }
                guard let escape = bytes.popFirst() else { return nil }
                switch escape {
                case UInt8(ascii: "a"): value.append(7)
                case UInt8(ascii: "b"): value.append(8)
                case UInt8(ascii: "e"), UInt8(ascii: "E"): value.append(27)
                case UInt8(ascii: "f"): value.append(12)
                case UInt8(ascii: "n"): value.append(10)
                case UInt8(ascii: "r"): value.append(13)
                case UInt8(ascii: "t"): value.append(9)
                case UInt8(ascii: "v"): value.append(11)
                case UInt8(ascii: "0")...UInt8(ascii: "7"):
                    var code = UInt32(escape - UInt8(ascii: "0"))
                    for _ in 0..<2 {
                        guard let digit = bytes.first, (UInt8(ascii: "0")...UInt8(ascii: "7")).contains(digit) else {
                            break
                        }
                        code = code * 8 + UInt32(digit - UInt8(ascii: "0"))
                        bytes.removeFirst()
                    }
                    value.append(UInt8(truncatingIfNeeded: code))
                case UInt8(ascii: "x"):
                    value.append(UInt8(truncatingIfNeeded: hexadecimal(upTo: 2) ?? 0))
                case UInt8(ascii: "u"), UInt8(ascii: "U"):
                    guard let code = hexadecimal(upTo: escape == UInt8(ascii: "u") ? 4 : 8),
                        let scalar = Unicode.Scalar(code)
                    else { return nil }
                    value += Array(String(Character(scalar)).utf8)
                case UInt8(ascii: "c"):
                    guard let control = bytes.popFirst() else { return nil }
                    value.append(control & 0x1f)
                default:
                    // \\ \' \" \? stand for themselves; bash keeps any other backslash.
                    if ![UInt8(ascii: "\\"), UInt8(ascii: "'"), UInt8(ascii: "\""), UInt8(ascii: "?")].contains(escape)
                    {
                        value.append(byte)
                    }
                    value.append(escape)
                }
            }
            return nil
        }

        private mutating func hexadecimal(upTo count: Int) -> UInt32? {
            var code: UInt32 = 0
            var digits = 0
            while digits < count, let byte = bytes.first, let digit = Self.hexDigit(byte) {
                code = code * 16 + digit
                digits += 1
                bytes.removeFirst()
            }
            return digits == 0 ? nil : code
        }

        private static func hexDigit(_ byte: UInt8) -> UInt32? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return UInt32(byte - UInt8(ascii: "A") + 10)
            default: return nil
            }
        }

        /// `(…)`: an array's elements, each `[key]="…"` or `[key]=$'…'` (the key quoted when it
        /// needs to be), skipped.
        mutating func skipArray() -> Bool {
            guard skip("(") else { return false }
            while true {
                if skip(")") { return true }
                // An associative array's key is quoted when it needs to be.
                guard skip("["), (quotedValue() != nil || word(until: UInt8(ascii: "]")) != nil) else { return false }
                _ = skip("]")
                guard skip("="), quotedValue() != nil else { return false }
                _ = skip(" ")
            }
        }
    }
}
