/// Hides credentials in anything that can show a URL (SPEC §9): the userinfo of a URL becomes
/// `***@` and every query value becomes `***`.
public enum Masking {
    /// Masks one URL or reference. Text that is not a URL comes back unchanged.
    public static func url(_ text: String) -> String {
        var out = Substring(text)
        var prefix = ""
        if let schemeEnd = text.firstRange(of: "://") {
            prefix = String(text[..<schemeEnd.upperBound])
            out = text[schemeEnd.upperBound...]
            // userinfo: everything before the last "@" of the authority.
            let authorityEnd = out.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? out.endIndex
            if let at = out[..<authorityEnd].lastIndex(of: "@") {
                prefix += "***@"
                out = out[out.index(after: at)...]
            }
        }
        guard let question = out.firstIndex(of: "?") else { return prefix + out }
        let fragmentStart = out[question...].firstIndex(of: "#") ?? out.endIndex
        let query = out[out.index(after: question)..<fragmentStart]
        let masked = query.split(separator: "&", omittingEmptySubsequences: false).map { pair -> String in
            if pair.isEmpty { return "" }
            guard let eq = pair.firstIndex(of: "=") else { return "***" }
            return pair[...eq] + "***"
        }
        return prefix + out[...question] + masked.joined(separator: "&") + out[fragmentStart...]
    }

    /// Masks every URL that appears inside free text (an error message, a child's stderr).
    public static func text(_ text: String) -> String {
        guard text.contains("://") else { return text }
        var result = ""
        var rest = Substring(text)
        while let sep = rest.firstRange(of: "://") {
            // Walk back to the start of the scheme.
            var start = sep.lowerBound
            while start > rest.startIndex {
                let before = rest.index(before: start)
                let c = rest[before]
                guard c.isLetter || c.isNumber || c == "+" || c == "-" || c == "." else { break }
                start = before
            }
            let end =
                rest[sep.upperBound...].firstIndex(where: { $0.isWhitespace || "'\"<>`".contains($0) })
                ?? rest.endIndex
            result += rest[..<start]
            result += url(String(rest[start..<end]))
            rest = rest[end...]
        }
        return result + rest
    }
}
