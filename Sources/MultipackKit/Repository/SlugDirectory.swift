import FoundationEssentials
import Glibc

/// `--slug-dir DIR` (SPEC §19): slugs filed by commit, as teams file Heroku's in a bucket.
///
///     DIR/<app>/<version>.tar.gz       the slug
///     DIR/<app>/<version>.release.yml  its release, with the final process types
///     DIR/<app>/<version>.json         what went in (`SlugRecord`), written last
///
/// `<version>` is the full commit, with `-dirty` for a work tree with changes. Each file is
/// written under a temporary name and renamed into place; the record goes first when a slug is
/// replaced and comes back last, so a record always describes the slug beside it.
struct SlugDirectory {
    let root: String
    let app: String
    let version: String

    var directory: String { root + "/" + app }
    var slug: String { "\(directory)/\(version).tar.gz" }
    var release: String { "\(directory)/\(version).release.yml" }
    var record: String { "\(directory)/\(version).json" }

    /// Refuses, before anything runs, a `--slug-dir` that is not a directory or holds something
    /// other than files where the slug's three files go.
    static func check(_ root: String) throws(MultipackError) {
        var info = stat()
        guard stat(root, &info) != 0 || info.st_mode & S_IFMT == S_IFDIR else {
            throw MultipackError.usage(
                "--slug-dir \(root) is not a directory.",
                hint: "Give --slug-dir a directory (it is made when missing).")
        }
    }

    /// The record of the slug already there, when all three files are.
    func existing() -> SlugRecord? {
        guard Files.isRegularFile(slug), Files.isRegularFile(release),
            let bytes = CacheStore.readBounded(record, limit: 1 << 20)
        else { return nil }
        return SlugRecord.decode(bytes)
    }

    /// Files the slug and its release (hard-linked where they are on the same file system,
    /// copied otherwise), then the record.
    func publish(slug built: String, release builtRelease: String, record: SlugRecord) throws {
        do {
            try Files.makeDirectory(directory)
            try Slug.checkTarget(slug, sidecars: [release, self.record])
            Files.remove(self.record)
            try Self.place(built, at: slug)
            try Self.place(builtRelease, at: release)
            try Files.write(record.json + "\n", to: self.record)
        } catch let error as MultipackError {
            throw error
        } catch {
            throw MultipackError.build(
                "Could not file the slug in \(directory)", details: [MultipackError.reason(error)],
                hint: "Check that --slug-dir is writable and has room.")
        }
    }

    /// `source` at `target`, whole or not at all: a hard link where both are on one file system,
    /// a copy otherwise.
    private static func place(_ source: String, at target: String) throws {
        // A sweep of partials in this directory (another commit's build) takes only what nobody
        // holds: the source is locked before a link to it appears beside the target, since a
        // link made first and locked after could be taken in between. A copy is written into the
        // partial `replaceWhole` made, which is locked from its start.
        let held = open(source, O_RDONLY | O_CLOEXEC)
        guard held >= 0 else { throw FileError(path: source, action: "read", errno: errno) }
        defer { close(held) }
        var sourceInfo = stat()
        var directoryInfo = stat()
        let linkable =
            fstat(held, &sourceInfo) == 0 && stat(Files.parent(of: target), &directoryInfo) == 0
            && sourceInfo.st_dev == directoryInfo.st_dev && flock(held, LOCK_EX | LOCK_NB) == 0
        try Files.replaceWhole(target) { temporary in
            if linkable {
                unlink(temporary)
                if link(source, temporary) == 0 { return }
            }
            // Not linked: the partial, made again if the link's attempt removed it, and locked
            // at once.
            let output = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard output >= 0 else { throw FileError(path: target, action: "write", errno: errno) }
            defer { close(output) }
            flock(output, LOCK_EX | LOCK_NB)
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            try Files.copyBytes(held, from: source, to: output, named: target, through: &buffer)
        }
    }
}

/// What went into a slug of a commit, beside it as `<version>.json` (SPEC §19): the stack and
/// its root, the buildpacks with their resolved versions, the config vars' names and one digest
/// of them. A slug whose record has the same `inputs` is not built again.
struct SlugRecord: Codable, Equatable {
    struct Stack: Codable, Equatable {
        /// `--stack`.
        var name: String
        /// The root the build ran on: `this machine's /`, a `--stack-root`, or an image.
        var root: String
        /// The image's manifest digest, when the root is an image.
        var digest: String?
        /// The stack's image could not be had offline: the build stood on this machine instead.
        var offlineFallback: Bool?
    }

    struct Buildpack: Codable, Equatable {
        /// Masked.
        var url: String
        /// A commit, `sha256:<digest>` of an archive, or `tree:<digest>` of a local directory's files.
        var version: String
    }

    struct ConfigVars: Codable, Equatable {
        var names: [String]
        /// SHA-256 of `name=value` lines (sorted by name, NUL-terminated): it tells a change
        /// without holding a value.
        var sha256: String
    }

    struct Inputs: Codable, Equatable {
        var stack: Stack
        var buildpacks: [Buildpack]
        var configVars: ConfigVars
    }

    var app: String
    /// The masked URL; nil for a local checkout.
    var repository: String?
    var ref: String?
    var commit: String
    var dirty: Bool
    var inputs: Inputs
    var slugBytes: Int64
    var slugSha256: String
    var processTypes: [String: String]
    var multipack: String
    var builtAt: String

    var json: String { SnakeCaseJSON.text(of: self) }

    static func decode(_ bytes: [UInt8]) -> SlugRecord? {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try? decoder.decode(SlugRecord.self, from: Data(bytes))
    }
}

extension SlugRecord.ConfigVars {
    init(_ vars: [(key: String, value: String)]) throws {
        let sorted = vars.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
        names = sorted.map(\.key)
        sha256 = try sha256Hex(of: Array(sorted.map { "\($0.key)=\($0.value)\0" }.joined().utf8))
    }
}

extension SlugRecord.Inputs {
    /// Says how `other` (the slug's) differs from these, one line per difference.
    func differences(from other: SlugRecord.Inputs) -> [String] {
        var lines: [String] = []
        // The digest an image has now is known only once it is pulled: a build compares the
        // image's name and records the digest it built on. A build that stood on this machine
        // because the image was offline is not built again for that alone (offline, every one
        // would be); the log says so.
        if stack.name != other.stack.name || stack.root != other.stack.root
            || (stack.digest != nil && other.stack.digest != nil && stack.digest != other.stack.digest)
        {
            lines.append("the stack: \(other.stack.shown) → \(stack.shown)")
        }
        if configVars != other.configVars {
            lines.append(
                configVars.names == other.configVars.names
                    ? "the config vars' values"
                    : "the config vars: \(other.configVars.shownNames) → \(configVars.shownNames)")
        }
        if buildpacks.map(\.url) != other.buildpacks.map(\.url) {
            lines.append(
                "the buildpacks: \(other.buildpacks.map(\.url).joined(separator: ", ")) → "
                    + buildpacks.map(\.url).joined(separator: ", "))
        } else {
            for (now, then) in zip(buildpacks, other.buildpacks) where now.version != then.version {
                lines.append("\(now.url): \(then.version.prefix(19)) → \(now.version.prefix(19))")
            }
        }
        return lines
    }
}

extension SlugRecord.Stack {
    var shown: String {
        "\(name) on \(root)" + (digest.map { " (\($0.prefix(19)))" } ?? "")
            + (offlineFallback == true ? " (this machine's, offline)" : "")
    }
}

extension SlugRecord.ConfigVars {
    var shownNames: String { names.isEmpty ? "(none)" : names.joined(separator: ", ") }
}
