/// Hides credentials in anything that can show a URL (SPEC §9): the userinfo of a URL becomes
/// `***@` and every query value becomes `***`.
public enum Masking {
    /// Masks one URL or reference. Text that is not a URL comes back unchanged.
    public static func url(_ text: String) -> String {
        var out = Substring(text)
        var prefix = ""
        if let schemeEnd = schemeSeparator(in: text[...]) {
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

    /// Masks every URL that appears inside free text (an error message, a child's stderr), and
    /// scheme-less userinfo with a password (`user:TOKEN@host`, as git prints it and as scp-like
    /// references write it).
    public static func text(_ text: String) -> String {
        guard schemeSeparator(in: text[...]) != nil || text.utf8.contains(UInt8(ascii: "@")) else { return text }
        var result = ""
        var rest = Substring(text)
        while let sep = schemeSeparator(in: rest) {
            // Walk back to the start of the scheme.
            var start = sep.lowerBound
            while start > rest.startIndex {
                let before = rest.index(before: start)
                let c = rest[before]
                guard c.isLetter || c.isNumber || c == "+" || c == "-" || c == "." else { break }
                start = before
            }
            let end = rest[sep.upperBound...].firstIndex(where: isURLEnd) ?? rest.endIndex
            result += userinfo(rest[..<start])
            result += url(String(rest[start..<end]))
            rest = rest[end...]
        }
        return result + userinfo(rest)
    }

    /// Removes from git's own output what a URL's credentials would show as, in any form git
    /// prints them ("unable to look up user:TOKEN@host", a decoded token, a query value).
    public static func scrub(_ output: String, secretsOf url: String) -> String {
        var out = text(output)
        for secret in secrets(of: url) where out.contains(secret) {
            out = out.replacing(secret, with: "***")
        }
        return out
    }

    /// The parts of a URL that are credentials: the userinfo's password (or the user alone when it
    /// is all there is and looks like a token), and every query value; longest first.
    static func secrets(of url: String) -> [String] {
        var found: [String] = []
        var authority = Substring(url)
        if let schemeEnd = schemeSeparator(in: url[...]) { authority = url[schemeEnd.upperBound...] }
        authority = authority.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        if let at = authority.lastIndex(of: "@") {
            let info = authority[..<at]
            if let colon = info.firstIndex(of: ":") {
                found.append(String(info))
                found.append(String(info[info.index(after: colon)...]))
            } else if info.count >= 16 {
                found.append(String(info))
            }
        }
        if let question = url.firstIndex(of: "?") {
            let query = url[url.index(after: question)...].prefix { $0 != "#" }
            for pair in query.split(separator: "&") {
                if let eq = pair.firstIndex(of: "=") { found.append(String(pair[pair.index(after: eq)...])) }
            }
        }
        return found.filter { $0.count >= 4 }.sorted { $0.count > $1.count }
    }

    /// The first `://`, found byte by byte: every log line is masked, and the standard library's
    /// generic search, which compares Characters, was the costliest part of a build's log.
    static func schemeSeparator(in text: Substring) -> Range<String.Index>? {
        let bytes = text.utf8
        var from = bytes.startIndex
        while let colon = bytes[from...].firstIndex(of: UInt8(ascii: ":")) {
            let slashes = bytes[bytes.index(after: colon)...].prefix(2)
            if slashes.elementsEqual("//".utf8) { return colon..<slashes.endIndex }
            from = bytes.index(after: colon)
        }
        return nil
    }

    private static func isURLEnd(_ c: Character) -> Bool {
        c.isWhitespace || "'\"<>`".contains(c)
    }

    /// `user:TOKEN@host` outside a URL becomes `***@host`: a userinfo with a password. A plain
    /// `git@host:path` has no secret and stays, and so does an image pinned by digest
    /// (`127.0.0.1:5000/name@sha256:…`). One pass, whatever the text.
    private static func userinfo(_ text: Substring) -> String {
        guard text.utf8.contains(UInt8(ascii: "@")) else { return String(text) }
        var out = ""
        var word = ""  // the current word, not yet known to be userinfo
        var hasColon = false
        var hasAt = false
        for index in text.indices {
            let c = text[index]
            if isURLEnd(c) || "([{,;=".contains(c) {
                out += word
                out.append(c)
                (word, hasColon, hasAt) = ("", false, false)
            } else if c == "@" && hasColon && !hasAt && !text[text.index(after: index)...].hasPrefix("sha256:") {
                out += "***@"
                (word, hasColon, hasAt) = ("", false, true)
            } else {
                word.append(c)
                hasColon = hasColon || c == ":"
                hasAt = hasAt || c == "@"
            }
        }
        return out + word
    }
}
