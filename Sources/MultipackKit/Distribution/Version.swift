import CMultipackStamp
import FoundationEssentials

/// Which multipack this is: the version from `buildpack.toml` and the commit it was built from.
public struct MultipackVersion: Sendable, CustomStringConvertible {
    public var version: String
    /// The full commit hash, with `-dirty` when the checkout had uncommitted changes; nil if unknown.
    public var commit: String?

    public init(version: String, commit: String?) {
        self.version = version
        self.commit = commit
    }

    /// A packaged binary carries both in its stamp (see `Packager`). A binary built in a checkout
    /// has none, and reads `buildpack.toml` and `.git` next to it instead (a few small files, no
    /// process: every shim call parses the command line, which asks for the version).
    public static let current: MultipackVersion = {
        if let stamped = MultipackVersion(stamp: String(cString: multipack_stamp_text())) { return stamped }
        let dir = Invocation.locateBuildpackDir(ProcessInfo.processInfo.environment)
        let toml = (try? Files.read(dir + "/buildpack.toml")).map(BuildpackToml.init)
        return MultipackVersion(
            version: toml?.string("buildpack", "version") ?? "unknown", commit: GitHead.commit(of: dir))
    }()

    /// `version=…` and `commit=…` lines, as `Packager.stampSource` writes them.
    init?(stamp: String) {
        var fields: [String: String] = [:]
        for line in stamp.lines {
            guard let equals = line.firstIndex(of: "=") else { continue }
            fields[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        guard let version = fields["version"], !version.isEmpty else { return nil }
        self.init(version: version, commit: fields["commit"].flatMap { $0.isEmpty ? nil : $0 })
    }

    public var description: String {
        "\(version) (commit \(commit.map { String($0.prefix(12)) + ($0.hasSuffix("-dirty") ? "-dirty" : "") } ?? "unknown"))"
    }
}

/// The commit a checkout is at, read from its `.git` files (worktrees and packed refs included)
/// without starting git.
enum GitHead {
    static func commit(of directory: String) -> String? {
        var gitDir = directory + "/.git"
        if !Files.isDirectory(gitDir) {
            // A worktree or submodule: `.git` is a file saying where the repository is.
            guard let text = try? Files.read(gitDir), text.hasPrefix("gitdir:") else { return nil }
            gitDir = Files.join(directory, String(text.dropFirst(7)).trimmingCharacters(" ", "\n", "\r"))
        }
        guard let head = (try? Files.read(gitDir + "/HEAD"))?.trimmingCharacters(" ", "\n", "\r") else { return nil }
        guard head.hasPrefix("ref:") else { return isCommit(head) ? head : nil }
        let ref = String(head.dropFirst(4)).trimmingCharacters(" ")
        let common = (try? Files.read(gitDir + "/commondir")).map {
            Files.join(gitDir, $0.trimmingCharacters(" ", "\n", "\r"))
        }
        for dir in [gitDir] + (common.map { [$0] } ?? []) {
            if let sha = (try? Files.read(dir + "/" + ref))?.trimmingCharacters(" ", "\n", "\r"), isCommit(sha) {
                return sha
            }
            guard let packed = try? Files.read(dir + "/packed-refs") else { continue }
            for line in packed.lines where line.hasSuffix(" " + ref) {
                let sha = String(line.prefix(40))
                if isCommit(sha) { return sha }
            }
        }
        return nil
    }

    private static func isCommit(_ text: String) -> Bool {
        text.utf8.count == 40 && text.allSatisfy(\.isHexDigit)
    }
}
