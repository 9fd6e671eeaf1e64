import FoundationEssentials
import Glibc

/// `.slugfilter` (SPEC §14): rsync filter rules, `- PATTERN` and `+ PATTERN`, applied to BUILD_DIR
/// after `post_compile`. The rules decide as rsync's sender does: for each path, from the top
/// down, the first rule that matches wins; an excluded directory goes whole, unread.
public struct SlugFilter: Sendable {
    /// Kept whatever the rules say: rsync sees them as `+ /NAME` lines ahead of the file's own.
    static let kept = [".slugfilter", ".buildpacks", ".buildpacks.lock"]

    /// The built-in rules, then the file's, compiled and indexed.
    var rules = SlugFilterRules()
    /// Lines whose pattern ends in blanks: rsync keeps them, which is rarely what was meant.
    public private(set) var trailingBlankLines: [Int] = []

    public init(_ text: String) throws(MultipackError) {
        try self.init(bytes: Array(text.utf8))
    }

    /// Reads the rules as bytes, as rsync does: a pattern need not be UTF-8, as file names need not.
    init(bytes text: [UInt8]) throws(MultipackError) {
        for name in Self.kept { _ = rules.add(include: true, pattern: Array("/\(name)".utf8)[...]) }
        var text = text[...]
        if text.starts(with: [0xEF, 0xBB, 0xBF]) { text = text.dropFirst(3) }
        // Line by line without a list of them all (a long file costs its rules, not its lines).
        // rsync ends a line at CR as well as at LF, so CRLF files read the same.
        var number = 1
        while true {
            let end = text.firstIndex(of: 0x0A) ?? text.endIndex
            for piece in text[..<end].split(separator: 0x0D) { try add(Array(piece), number: number) }
            guard end < text.endIndex else { break }
            text = text[(end + 1)...]
            number += 1
        }
        rules.buildIndex()
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
        let pattern = bytes[2...]
        guard rules.add(include: bytes[0] == UInt8(ascii: "+"), pattern: pattern) else {
            throw Self.badLine(
                number, shown, "its pattern has an unclosed `[`, an unknown `[:class:]` or a lone trailing `\\`")
        }
        if pattern.last == 0x20 || pattern.last == 0x09 { trailingBlankLines.append(number) }
    }

    /// Where a build stopped by a signal while the rules were applied says it was.
    static let stage = "while .slugfilter was trimming the slug"

    /// More rules than any app needs (10,000 rules are about 300 KB).
    static let maxBytes = 4 << 20

    /// The app's `.slugfilter`, parsed; nil when it has none. A symlink out of the app, a FIFO,
    /// a directory or a device is bad input, never followed, waited for or echoed.
    static func read(_ buildDir: String) throws -> SlugFilter? {
        let path = buildDir + "/.slugfilter"
        guard Files.lexists(path) else { return nil }
        let bytes: [UInt8]
        do {
            bytes = try Files.readInApp(path, root: buildDir, limit: maxBytes)
        } catch let error as FileError where error.detail != nil {
            throw MultipackError.usage(
                "The app's .slugfilter " + (error.errno == EFBIG ? "cannot be read: " : "is ") + error.detail! + ".",
                hint: "Make .slugfilter a plain text file of rsync filter rules (`- PATTERN`, `+ PATTERN`) in the app.")
        }
        return try SlugFilter(bytes: bytes)
    }

    /// True when the file has no rules beyond the built-in ones.
    public var isEmpty: Bool { rules.count == Self.kept.count }

    /// Whether `path` (relative to BUILD_DIR, no leading `/`) is kept: the first rule that
    /// matches decides, as in rsync.
    func keeps(_ path: [UInt8], isDirectory: Bool) -> Bool {
        rules.firstMatch(path, isDirectory: isDirectory).map { rules.rules[$0].include } ?? true
    }

    private static func badLine(_ number: Int, _ line: String, _ reason: String) -> MultipackError {
        MultipackError.usage(
            ".slugfilter line \(number) is not a filter rule: \(line)",
            hint:
                "Fix line \(number): \(reason); `#` starts a comment. See \"Trimming the slug\" in multipack's README.")
    }
}
