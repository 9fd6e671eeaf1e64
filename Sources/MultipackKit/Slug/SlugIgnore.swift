import Glibc

/// `.slugignore`: what Heroku deletes from the build directory before compiling. gitignore-like:
/// `#` comments and blank lines skipped; a pattern with a `/` (other than a trailing one) is
/// anchored at the app root, one without matches a name at any depth; `*`, `?` and `[…]` are
/// globs that never cross a `/`; a trailing `/` matches directories only; a matched directory
/// goes with its whole subtree. Negation (`!`) is not supported, as on Heroku.
public struct SlugIgnore: Sendable {
    struct Pattern: Sendable {
        var glob: String
        var anchored: Bool
        var directoryOnly: Bool
    }

    var patterns: [Pattern] = []

    public init(_ text: String) {
        for rawLine in text.lines {
            var line = Substring(rawLine).trimmingBlanks()
            if line.isEmpty || line.first == "#" { continue }
            var directoryOnly = false
            while line.count > 1 && line.last == "/" {
                line = line.dropLast()
                directoryOnly = true
            }
            let anchored = line.contains("/")
            while line.first == "/" { line = line.dropFirst() }
            if line.isEmpty { continue }
            patterns.append(Pattern(glob: String(line), anchored: anchored, directoryOnly: directoryOnly))
        }
    }

    public var isEmpty: Bool { patterns.isEmpty }

    /// Whether `path` (relative to the app root, no leading `/`) is ignored by a pattern itself.
    func matches(_ path: String, isDirectory: Bool) -> Bool {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        for pattern in patterns where isDirectory || !pattern.directoryOnly {
            let subject = pattern.anchored ? path : name
            // No FNM_PERIOD: as in gitignore, `*` matches a leading dot too.
            if fnmatch(pattern.glob, subject, FNM_PATHNAME) == 0 { return true }
        }
        return false
    }

    /// Deletes every match below `root` and returns the removed paths (relative, sorted).
    @discardableResult
    public func apply(to root: String) -> [String] {
        guard !isEmpty else { return [] }
        var removed: [String] = []
        func walk(_ relative: String) {
            let directory = relative.isEmpty ? root : root + "/" + relative
            for name in Files.list(directory) {
                let path = relative.isEmpty ? name : relative + "/" + name
                var info = stat()
                guard lstat(root + "/" + path, &info) == 0 else { continue }
                let isDirectory = (info.st_mode & S_IFMT) == S_IFDIR
                if matches(path, isDirectory: isDirectory) {
                    Files.remove(root + "/" + path)
                    removed.append(path)
                } else if isDirectory {
                    walk(path)
                }
            }
        }
        walk("")
        return removed
    }
}
