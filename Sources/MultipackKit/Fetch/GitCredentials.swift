/// The user and password of an http(s) git URL, handed to git through its environment rather
/// than its argv, which any user of the machine can read in `ps` or /proc/PID/cmdline. git gets
/// the URL without them and a credential helper, configured by `GIT_CONFIG_COUNT`/`KEY`/`VALUE`,
/// that prints them from two variables; only the URL's own host gets them, and the helpers the
/// caller's git config names are set aside for that host, as the URL's credentials were before.
struct GitCredentials {
    /// The URL without its userinfo.
    var url: String
    /// The host's address as git's config matches it: `https://host:port`.
    var origin: String
    var username: String
    var password: String

    /// Nil for a URL without a userinfo, and for anything but http(s) (ssh takes no password).
    init?(_ text: String) {
        let lowered = text.lowercased()
        guard let scheme = ["https://", "http://"].first(where: { lowered.hasPrefix($0) }) else { return nil }
        let rest = text.dropFirst(scheme.count)
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        guard let at = rest[..<authorityEnd].lastIndex(of: "@") else { return nil }
        let userinfo = rest[..<at]
        let colon = userinfo.firstIndex(of: ":")
        username = Self.percentDecoded(colon.map { userinfo[..<$0] } ?? userinfo)
        password = colon.map { Self.percentDecoded(userinfo[userinfo.index(after: $0)...]) } ?? ""
        // A line break would add fields to what the helper tells git: such a URL is left to git,
        // which refuses it.
        guard !(username + password).unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
            return nil
        }
        let host = rest[rest.index(after: at)..<authorityEnd]
        url = String(text.prefix(scheme.count)) + rest[rest.index(after: at)...]
        origin = scheme + host.lowercased()
    }

    static let usernameVariable = "MULTIPACK_GIT_USERNAME"
    static let passwordVariable = "MULTIPACK_GIT_PASSWORD"

    /// The helper prints the two variables for a `get`; git runs it with sh.
    static let helper =
        "!f() { test \"$1\" = get || exit 0; printf 'username=%s\\npassword=%s\\n' "
        + "\"$\(usernameVariable)\" \"$\(passwordVariable)\"; }; f"

    /// Adds the helper to the environment's config entries (after any the caller set).
    func configure(_ environment: inout [String: String]) {
        let first = environment["GIT_CONFIG_COUNT"].flatMap { Int($0) } ?? 0
        // An empty helper first empties the list the caller's config made, for this host only.
        for (offset, value) in ["", Self.helper].enumerated() {
            environment["GIT_CONFIG_KEY_\(first + offset)"] = "credential.\(origin).helper"
            environment["GIT_CONFIG_VALUE_\(first + offset)"] = value
        }
        environment["GIT_CONFIG_COUNT"] = String(first + 2)
        environment[Self.usernameVariable] = username
        environment[Self.passwordVariable] = password
    }

    /// `%40` → `@`, as git decodes a URL's userinfo. A `%` not followed by two hex digits stays.
    private static func percentDecoded(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "%"), utf8.count >= 2,
                utf8.prefix(2).allSatisfy({ Character(Unicode.Scalar($0)).isHexDigit }),
                let value = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16)
            {
                bytes.append(value)
                utf8 = utf8.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
