/// `GIT_URL[#REF]`: an app that `multipack build` takes from a repository (SPEC §19) rather than
/// from a directory. The URL may hold credentials: only `masked` is ever printed or stored.
public struct AppRepository: Sendable, Equatable {
    /// The URL as given (a local repository's path made absolute).
    public var url: String
    /// A branch, tag, full or short commit; nil: the default branch.
    public var ref: String?

    public var masked: String { Masking.url(url) }

    /// The longest ref looked up (git's own names are far shorter).
    static let maxRefBytes = 1024

    /// The repository named by an argument of `build` or `ci`, or nil when it names none: a git
    /// URL (`https://…`, `ssh://…`, `git@host:path`, `file://…`), or a local repository's path
    /// with a `#REF`. A path without a ref is the app's directory, as before.
    public static func parse(_ text: String) -> AppRepository? {
        guard case .git(let url, let ref)? = BuildpackList.reference(text) else { return nil }
        if BuildpackList.isPath(url) {
            guard ref != nil else { return nil }
            return AppRepository(url: Files.absolute(url), ref: ref)
        }
        return AppRepository(url: url, ref: ref)
    }

    /// Refuses a URL or ref no repository could have: a control character (git would read a
    /// line break as the end of the URL), or a length git refuses anyway.
    func check() throws(MultipackError) {
        let hint = "Give the repository's URL, then # and a branch, tag or commit: https://host/org/app.git#main"
        guard !(url + (ref ?? "")).unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
            throw MultipackError.usage("The app's URL or ref holds a control character: \(masked).", hint: hint)
        }
        guard url.utf8.count <= BuildpackList.maxReferenceBytes, (ref?.utf8.count ?? 0) <= Self.maxRefBytes else {
            throw MultipackError.usage(
                "The app's URL or ref is too long (at most \(BuildpackList.maxReferenceBytes) and \(Self.maxRefBytes) bytes).",
                hint: hint)
        }
    }

    /// The repository's name (`shop` for `https://host/org/shop.git`): the directory `--slug-dir`
    /// files its slugs under, and the start of its state directory's name. Anything but letters,
    /// digits, `.`, `_` and `-` becomes `-`, so that the name is one safe path component.
    public var name: String {
        var path = Substring(url)
        if let scheme = path.firstRange(of: "://") { path = path[scheme.upperBound...] }
        path = path.prefix { $0 != "?" }
        while path.hasSuffix("/") { path = path.dropLast() }
        var last = path.split(whereSeparator: { $0 == "/" || $0 == ":" }).last ?? "app"
        if last.hasSuffix(".git") { last = last.dropLast(4) }
        return Self.safeName(String(last))
    }

    static func safeName(_ text: String) -> String {
        let allowed: (Character) -> Bool = { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
        let name = String(text.map { allowed($0) ? $0 : "-" }.prefix(100))
        return name.isEmpty || name.allSatisfy({ $0 == "." }) ? "app" : name
    }

    /// Where this app's state is kept (SPEC §12): one directory per repository, keyed by the
    /// masked URL (credentials never reach a name on disk), next to the directories' apps.
    func stateDirectory(environment: [String: String]) -> String {
        "\(LocalState.appsRoot(environment))/\(name)-\(cacheKey(masked).prefix(8))"
    }

    /// The mirror's directory under `$XDG_CACHE_HOME/multipack/repos/`.
    func mirrorDirectory(environment: [String: String]) -> String {
        "\(AppMirror.reposRoot(environment))/\(name)-\(cacheKey(masked))"
    }

    /// The ref as the log shows it.
    var shownRef: String { ref.map { "#" + Masking.text($0) } ?? " (its default branch)" }
}
