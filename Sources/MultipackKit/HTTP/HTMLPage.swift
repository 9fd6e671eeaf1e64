/// An HTML page where an archive was expected: what a login wall, a captive portal or a project's
/// web page sends with status 200. Told apart by its first bytes (or its Content-Type) so that the
/// user reads "HTML page titled …" instead of "truncated archive".
struct HTMLPage {
    var title: String?

    init?(head: [UInt8], contentType: String?) {
        let text = String(decoding: head, as: UTF8.self)
        let start = text.drop(while: { $0.isWhitespace || $0 == "\u{FEFF}" }).prefix(15).lowercased()
        let looksLikeHTML = start.hasPrefix("<!doctype html") || start.hasPrefix("<html") || start.hasPrefix("<head")
        let saysHTML = contentType?.lowercased().hasPrefix("text/html") == true
        // Archives start with binary magic, never with '<'.
        guard looksLikeHTML || (saysHTML && start.hasPrefix("<")) else { return nil }
        title = Self.title(in: text)
    }

    /// The first words of `<title>`, blanks collapsed, cut to 80 characters.
    static func title(in text: String) -> String? {
        // ASCII-lowercased bytes keep the positions of the original ones.
        let bytes = Array(text.utf8)
        let lower = bytes.map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 }
        guard let open = lower.firstRange(of: Array("<title".utf8)),
            let close = lower[open.upperBound...].firstIndex(of: UInt8(ascii: ">"))
        else { return nil }
        let end = lower[(close + 1)...].firstRange(of: Array("</title".utf8))?.lowerBound ?? bytes.endIndex
        let words = String(decoding: bytes[(close + 1)..<end], as: UTF8.self).split(whereSeparator: \.isWhitespace)
        let joined = words.joined(separator: " ")
        guard !joined.isEmpty else { return nil }
        return joined.count > 80 ? String(joined.prefix(79)) + "…" : joined
    }
}
