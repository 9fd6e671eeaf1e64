/// Where a child buildpack comes from (SPEC §4).
public enum BuildpackReference: Equatable, Sendable, Codable {
    /// A git repository: a URL, `git@host:path`, or a local repository path, with an optional ref.
    case git(url: String, ref: String?)
    /// A local directory used as it is (relative paths are relative to the app root).
    case directory(path: String)
    /// A tarball over http(s) or file://.
    case archive(url: String)
    /// `namespace/name` in the buildpack registry.
    case registry(namespace: String, name: String)

    /// The path of a directory or local repository written as a path (`/…`, `./…`, `../…`).
    var localPath: String? {
        switch self {
        case .directory(let path): path
        case .git(let url, _): BuildpackList.isPath(url) ? url : nil
        case .archive, .registry: nil
        }
    }
}

/// One line of `.buildpacks`.
public struct BuildpackEntry: Equatable, Sendable, Codable {
    public var line: Int
    /// The reference as written, for the log (mask it before printing).
    public var text: String
    public var reference: BuildpackReference
    /// `sha256=`: the archive's digest, from `.buildpacks` or the lock.
    public var sha256: String?
    /// `commit=`: the commit a git entry's ref resolved to when it was locked (SPEC §13).
    public var commit: String?
    /// The pin came from `.buildpacks.lock`, not from `.buildpacks` (for the messages).
    public var pinnedByLock = false

    /// The reference with credentials hidden, fit for any output.
    public var maskedText: String { Masking.url(text) }

    /// An archive (its records and pin need SHA-256) or a git repository (a cached checkout is
    /// checked with SHA-1): libcrypto is loaded early for these.
    var needsDigests: Bool {
        if case .directory = reference { return false }
        return true
    }
}

public struct BuildpackListError: Error, Equatable, CustomStringConvertible {
    public var line: Int
    /// The offending text, credentials already masked.
    public var text: String
    public var reason: String

    public var description: String { ".buildpacks line \(line): \(reason): \(text)" }
}

public enum BuildpackList {
    static let archiveSuffixes = [".tgz", ".tar.gz", ".tar.xz", ".txz", ".tar"]
    /// The longest reference read (a presigned archive URL is a few KB).
    static let maxReferenceBytes = 8192

    /// Parses the contents of a `.buildpacks` file. With `directory` (the app root, or the current
    /// directory for `--buildpack`), a bare relative path such as `vendor/bp` that names an existing
    /// directory there is that directory, as `pack` reads it; only otherwise is it a registry name.
    public static func parse(_ contents: String, directory: String? = nil) throws(BuildpackListError)
        -> [BuildpackEntry]
    {
        var text = Substring(contents)
        if text.unicodeScalars.first == "\u{FEFF}" { text = Substring(text.unicodeScalars.dropFirst()) }
        var entries: [BuildpackEntry] = []
        for (offset, rawLine) in text.lines.enumerated() {
            var line = rawLine
            if line.last == "\r" { line = line.dropLast() }
            // SPEC §4: a NUL or control character is a bad line (a NUL would cut the URL git gets).
            if let bad = line.unicodeScalars.first(where: { $0.value < 0x20 && $0 != "\t" || $0.value == 0x7f }) {
                throw BuildpackListError(
                    line: offset + 1, text: shown(line),
                    reason: bad == "\0" ? "it holds a NUL byte" : "it holds a control character")
            }
            line = line.trimmingBlanks()
            if line.isEmpty || line.first == "#" { continue }
            // " #" (a blank, then #) starts a comment; a # inside a URL is the ref separator.
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            var kept: [Substring] = []
            for word in words {
                if word.first == "#" { break }
                kept.append(word)
            }
            entries.append(try entry(kept, line: offset + 1, directory: directory))
        }
        return entries
    }

    /// Parses the bytes of a `.buildpacks` file: a line that is not valid UTF-8 is a bad line,
    /// never read with replacement characters.
    public static func parse(bytes: [UInt8], directory: String? = nil) throws(BuildpackListError)
        -> [BuildpackEntry]
    {
        for (offset, line) in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
            .enumerated() where String(validating: line, as: UTF8.self) == nil
        {
            throw BuildpackListError(
                line: offset + 1, text: shown(Substring(String(decoding: line, as: UTF8.self))),
                reason: "it is not valid UTF-8")
        }
        return try parse(String(decoding: bytes, as: UTF8.self), directory: directory)
    }

    /// A bad line as the error shows it: credentials masked, control characters escaped, cut to
    /// 200 characters.
    static func shown(_ line: Substring) -> String {
        var out = ""
        var count = 0
        for scalar in Masking.url(String(line)).unicodeScalars {
            let escaped = scalar.value < 0x20 || scalar.value == 0x7f
            // Escapes count as what they show: the echo is at most 200 characters, plus "…".
            count += escaped ? 4 : 1
            if count > 200 { return out + "…" }
            if escaped {
                out += "\\x" + String(scalar.value, radix: 16).leftPadded(to: 2)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    static func shown(_ line: String) -> String { shown(Substring(line)) }

    static func entry(_ words: [Substring], line: Int, directory: String? = nil) throws(BuildpackListError)
        -> BuildpackEntry
    {
        let text = String(words[0])
        func failure(_ reason: String) -> BuildpackListError {
            BuildpackListError(line: line, text: shown(words.joined(separator: " ")), reason: reason)
        }
        // git takes no argument over 128 KB, and no real URL comes near this.
        guard text.utf8.count <= maxReferenceBytes else {
            throw failure(
                "the reference is \(text.utf8.count) bytes long; a buildpack URL or path is at most "
                    + "\(maxReferenceBytes) bytes")
        }
        var sha256: String?
        var commit: String?
        for option in words.dropFirst() {
            guard let equals = option.firstIndex(of: "=") else {
                throw failure("`\(Masking.url(String(option)))` is not an option (options are key=value)")
            }
            let key = option[..<equals]
            let value = option[option.index(after: equals)...]
            switch key {
            case "sha256":
                guard value.count == 64, value.allSatisfy(\.isHexDigit) else {
                    throw failure("sha256= takes the 64 hex digits of the archive's SHA-256 digest")
                }
                sha256 = value.lowercased()
            case "commit":
                guard value.count == 40, value.allSatisfy(\.isHexDigit) else {
                    throw failure("commit= takes the 40 hex digits of a full commit SHA")
                }
                commit = value.lowercased()
            default:
                throw failure("unknown option `\(key)` (the options are sha256= and commit=)")
            }
        }
        guard let reference = localDirectory(text, in: directory) ?? reference(text) else {
            throw failure(
                "this is not a buildpack reference (expected a git URL, an archive URL ending in .tgz, "
                    + ".tar.gz, .tar.xz, .txz or .tar, a registry name namespace/name, or the path of a "
                    + "directory that exists\(directory.map { " under \($0)" } ?? ""))")
        }
        // A line that is clearly a path names a directory: one that is not there is bad input
        // (exit 2, SPEC §11), said with its line before anything is fetched.
        if let directory, let path = reference.localPath, !Files.isDirectory(Files.join(directory, path)) {
            throw failure(
                "`\(Masking.url(path))` names a directory that does not exist (\(Files.join(directory, path)))")
        }
        if sha256 != nil {
            switch reference {
            case .archive, .registry: break
            default: throw failure("sha256= pins archives and registry names only; pin a git URL with #<commit>")
            }
        }
        if commit != nil {
            guard case .git = reference else {
                throw failure("commit= pins git URLs only; pin an archive or a registry name with sha256=")
            }
        }
        return BuildpackEntry(line: line, text: text, reference: reference, sha256: sha256, commit: commit)
    }

    static func reference(_ text: String) -> BuildpackReference? {
        let (base, ref) = splitRef(text)
        if let ref, ref.isEmpty { return nil }
        if let schemeEnd = base.firstRange(of: "://") {
            let scheme = base[..<schemeEnd.lowerBound].lowercased()
            let rest = base[schemeEnd.upperBound...]
            let host = rest.prefix(while: { $0 != "/" && $0 != "?" })
            switch scheme {
            case "http", "https", "file":
                if scheme != "file" && host.split(separator: "@").last.map({ $0.isEmpty }) ?? true { return nil }
                if scheme == "file" && rest.first != "/" && !host.isEmpty && host != "localhost" { return nil }
                let path = rest.prefix(while: { $0 != "?" }).lowercased()
                if archiveSuffixes.contains(where: { path.hasSuffix($0) }) {
                    return ref == nil ? .archive(url: base) : nil
                }
                if rest.contains("?") { return nil }
                return .git(url: base, ref: ref)
            case "git", "ssh":
                return host.isEmpty ? nil : .git(url: base, ref: ref)
            default:
                return nil
            }
        }
        if base.hasPrefix("urn:buildpack:") {
            return ref == nil ? registryName(String(base.dropFirst("urn:buildpack:".count))) : nil
        }
        if isPath(base) {
            return ref == nil ? .directory(path: base) : .git(url: base, ref: ref)
        }
        // scp-like git: user@host:path
        if let at = base.firstIndex(of: "@"), let colon = base[at...].firstIndex(of: ":"),
            base.index(after: at) < colon, base.index(after: colon) < base.endIndex,
            !base[..<at].isEmpty, !base[..<at].contains("/")
        {
            return .git(url: base, ref: ref)
        }
        return ref == nil ? registryName(base) : nil
    }

    /// A bare relative path (`vendor/bp`, `vendor/bp#v1`) naming a directory under `directory`:
    /// the file system is asked before the name is read as a registry name.
    static func localDirectory(_ text: String, in directory: String?) -> BuildpackReference? {
        guard let directory, !text.isEmpty else { return nil }
        let (base, ref) = splitRef(text)
        guard !base.isEmpty, !base.hasPrefix("/"), !base.hasPrefix("./"), !base.hasPrefix("../"),
            !base.contains("://"), !base.hasPrefix("urn:"), !base.contains(":"), ref.map({ !$0.isEmpty }) ?? true,
            Files.isDirectory(Files.join(directory, base))
        else { return nil }
        return ref == nil ? .directory(path: "./" + base) : .git(url: "./" + base, ref: ref)
    }

    /// Clearly a path: absolute, or relative with `./` or `../` (a bare `a/b` may be a registry name).
    static func isPath(_ text: String) -> Bool {
        text.hasPrefix("/") || text.hasPrefix("./") || text.hasPrefix("../") || text == "." || text == ".."
    }

    static func registryName(_ text: String) -> BuildpackReference? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        let allowed: (Character) -> Bool = { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(allowed) && $0 != "." && $0 != ".." })
        else { return nil }
        return .registry(namespace: String(parts[0]), name: String(parts[1]))
    }

    /// `url#ref` → (url, ref). The ref is what follows the last `#`.
    static func splitRef(_ text: String) -> (String, String?) {
        guard let hash = text.lastIndex(of: "#") else { return (text, nil) }
        return (String(text[..<hash]), String(text[text.index(after: hash)...]))
    }
}
