/// app.json as Heroku reads it: where one object holds a key twice, the last one counts (Ruby's
/// and Go's JSON parsers keep the last; Foundation's decoder keeps the first). Every earlier
/// occurrence is renamed to a name no app uses (`"\u0000duplicate-N"`), so that the decoder sees
/// only the last. One pass over the bytes with a stack of the open objects (no recursion, so no
/// depth overflows); text that is not JSON comes back unchanged, for the decoder to refuse.
enum JSONLastKeyWins {
    /// How a renamed key starts: a decoder that lists an object's keys skips these.
    static let renamedPrefix = "\u{0}duplicate-"

    static func rewrite(_ json: [UInt8]) -> [UInt8] {
        // Per open object or array: whether it is an object, whether a key comes next, and the
        // last occurrence of each key so far (an earlier one is renamed as soon as a later comes).
        var isObject: [Bool] = []
        var expectsKey: [Bool] = []
        var keys: [[[UInt8]: Range<Int>]] = []
        var renamed: [Range<Int>] = []
        var index = 0
        while index < json.count {
            let byte = json[index]
            switch byte {
            case UInt8(ascii: "\""):
                guard let end = stringEnd(json, from: index) else { return json }
                if expectsKey.last == true {
                    let key = decoded(json[(index + 1)..<(end - 1)])
                    if let earlier = keys[keys.count - 1].updateValue(index..<end, forKey: key) {
                        renamed.append(earlier)
                    }
                    expectsKey[expectsKey.count - 1] = false
                }
                index = end
                continue
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                isObject.append(byte == UInt8(ascii: "{"))
                expectsKey.append(byte == UInt8(ascii: "{"))
                keys.append([:])
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                guard let object = isObject.popLast(), object == (byte == UInt8(ascii: "}")) else { return json }
                expectsKey.removeLast()
                keys.removeLast()
            case UInt8(ascii: ","):
                if isObject.last == true { expectsKey[expectsKey.count - 1] = true }
            default:
                break
            }
            index += 1
        }
        guard !renamed.isEmpty else { return json }
        // Where each renamed key starts, and where it ends: the text is copied in one pass.
        let ends = Dictionary(renamed.map { ($0.lowerBound, $0.upperBound) }, uniquingKeysWith: max)
        var output: [UInt8] = []
        output.reserveCapacity(json.count)
        var (position, number) = (0, 0)
        while position < json.count {
            if let end = ends[position] {
                output += Array("\"\\u0000duplicate-\(number)\"".utf8)
                number += 1
                position = end
            } else {
                output.append(json[position])
                position += 1
            }
        }
        return output
    }

    /// The index just after the string that starts at `start` (its opening quote), or nil.
    private static func stringEnd(_ json: [UInt8], from start: Int) -> Int? {
        var index = start + 1
        while index < json.count {
            switch json[index] {
            case UInt8(ascii: "\\"): index += 2
            case UInt8(ascii: "\""): return index + 1
            default: index += 1
            }
        }
        return nil
    }

    /// A string's content with its escapes read, as UTF-8: two spellings of one key are one key.
    private static func decoded(_ content: ArraySlice<UInt8>) -> [UInt8] {
        guard content.contains(UInt8(ascii: "\\")) else { return Array(content) }
        var scalars = String.UnicodeScalarView()
        var bytes = Array(content)[...]
        var pendingHigh: UInt32?
        while let byte = bytes.popFirst() {
            guard byte == UInt8(ascii: "\\"), let escape = bytes.popFirst() else {
                // Plain bytes: decoded as UTF-8 with the rest of the run.
                var run = [byte]
                while let next = bytes.first, next != UInt8(ascii: "\\") { run.append(bytes.removeFirst()) }
                scalars.append(contentsOf: String(decoding: run, as: UTF8.self).unicodeScalars)
                continue
            }
            let simple: [UInt8: Unicode.Scalar] = [
                UInt8(ascii: "n"): "\n", UInt8(ascii: "t"): "\t", UInt8(ascii: "r"): "\r", UInt8(ascii: "b"): "\u{08}",
                UInt8(ascii: "f"): "\u{0C}",
            ]
            if let scalar = simple[escape] {
                scalars.append(scalar)
            } else if escape == UInt8(ascii: "u"), bytes.count >= 4,
                let value = UInt32(String(decoding: bytes.prefix(4), as: UTF8.self), radix: 16)
            {
                bytes = bytes.dropFirst(4)
                if (0xD800..<0xDC00).contains(value) {
                    pendingHigh = value
                    continue
                }
                if let high = pendingHigh, (0xDC00..<0xE000).contains(value) {
                    scalars.append(Unicode.Scalar(0x10000 + ((high - 0xD800) << 10) + (value - 0xDC00)) ?? "\u{FFFD}")
                } else {
                    scalars.append(Unicode.Scalar(value) ?? "\u{FFFD}")
                }
            } else {
                scalars.append(Unicode.Scalar(escape))
            }
            pendingHigh = nil
        }
        return Array(String(scalars).utf8)
    }
}
