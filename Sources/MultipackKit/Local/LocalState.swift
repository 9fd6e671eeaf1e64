import CMultipackSpawn
import Glibc

/// Where local builds keep things between runs: one directory per app under the user's cache
/// directory (`$XDG_CACHE_HOME/multipack/apps/<name>-<hash>`, 0700: it holds config vars). It holds
/// the app's cache and its last successful build, which only a build that succeeds replaces
/// (SPEC §12), whole, by one rename: a build that fails, is refused or is interrupted leaves it
/// as it was. Nothing of a build is left in TMPDIR.
///
///     cache/                       CACHE_DIR, kept between builds
///     kept/                        the last successful build
///       build/                     its build directory (BUILD_DIR, /tmp/build_<hex> inside)
///       build.release.yml          its release, with the final process types, for `multipack run`
///       build.report.yml           `bin/report`'s output
///       build.id                   `build_<hex> <time>`: which build it was
///       build.root.json            what it stood on: the stack's image and digest, a stack root, this machine
///       env/                       ENV_DIR: the config vars it was given (0700, files 0600)
///       slug.tgz (+ sidecars)      the slug, unless `--slug` put it elsewhere (`slug.path` says where)
///     next/                        the running build's `kept/`, until it succeeds
///     work/                        the running build's scratch (`/tmp` and `/app` inside)
///     ci/                          `multipack ci`'s own state, laid out the same: never `build`'s
public enum LocalState {
    /// `$XDG_CACHE_HOME/multipack/apps`, or `~/.cache/multipack/apps`.
    public static func appsRoot(_ environment: [String: String]) -> String {
        let base =
            environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? ((environment["HOME"] ?? "/tmp") + "/.cache")
        return base + "/multipack/apps"
    }

    public static func appDirectory(for appDir: String, environment: [String: String]) -> String {
        let appDir = Files.absolute(appDir)
        let name = appDir.split(separator: "/").last.map(String.init) ?? "app"
        return "\(appsRoot(environment))/\(name)-\(cacheKey(appDir).prefix(8))"
    }

    /// The release a build leaves for `multipack run`, next to what it describes (never inside
    /// it: the slug holds `./app/` only, and a build directory is `/app` at run time).
    public static func releaseSidecar(for path: String) -> String { path + ".release.yml" }

    /// The release beside a slug as `run SLUG` finds it: `SLUG.release.yml`, or for a slug filed
    /// by commit (`<commit>.tar.gz`, SPEC §19) `<commit>.release.yml`.
    static func existingReleaseSidecar(for path: String) -> String {
        let own = releaseSidecar(for: path)
        guard !Files.exists(own), path.hasSuffix(".tar.gz") else { return own }
        let filed = String(path.dropLast(".tar.gz".count)) + ".release.yml"
        return Files.exists(filed) ? filed : own
    }

    /// The config vars a slug was built with, in dotenv form, for `multipack run SLUG`.
    public static func configSidecar(for path: String) -> String { path + ".env" }

    /// Config vars are secrets: their files are the user's alone (SPEC §17).
    static let privateFileMode = 0o600
    static let privateDirectoryMode: mode_t = 0o700

    /// A directory only the user can enter, made (with its parents) where missing.
    static func makePrivateDirectory(_ path: String) throws {
        try Files.makeDirectory(path)
        guard chmod(path, privateDirectoryMode) == 0 else {
            throw FileError(path: path, action: "make private", errno: errno)
        }
    }

    /// One app's state directory, `build`'s or `ci`'s.
    struct App {
        var path: String
        /// CACHE_DIR between builds: the app's own, or for a commit of a repository the
        /// repository's, which its commits share (`CommitOrigin`).
        var cache: String
        init(appDir: String, environment: [String: String], ci: Bool = false) {
            path = LocalState.appDirectory(for: appDir, environment: environment) + (ci ? "/ci" : "")
            cache = path + "/cache"
        }
        init(path: String, cache: String) {
            self.path = path
            self.cache = cache
        }

        /// The state of what `options` build: a directory's, or a commit's (SPEC §19).
        init(options: LocalBuildOptions, environment: [String: String], ci: Bool = false) {
            if let origin = options.origin {
                self.init(path: origin.state + (ci ? "/ci" : ""), cache: ci ? origin.ciCache : origin.cache)
            } else {
                self.init(appDir: options.appDir, environment: environment, ci: ci)
            }
        }
        var work: String { path + "/work" }
        /// What a root caller's build has handed to the build's user (Handover).
        var handoverMarker: String { path + "/.handed-over" }

        /// The last successful build.
        var kept: Kept { Kept(path: path + "/kept") }
        /// The running build's, until it succeeds.
        var next: Kept { Kept(path: path + "/next") }

        /// Takes the app's lock (one build of an app at a time) and clears what a killed build
        /// left; the kept build is not touched.
        func begin() throws -> Int32 {
            try LocalState.makePrivateDirectory(path)
            let fd = open(path + "/.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw FileError(path: path + "/.lock", action: "open", errno: errno) }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                close(fd)
                throw MultipackError.usage(
                    "Another multipack build of this app is running (it holds \(path)/.lock).",
                    hint: "Wait for it to finish, or stop it.")
            }
            // A root caller's build that was killed left its directories the build's user's.
            Handover.recover(marker: handoverMarker, within: path)
            // A build that was killed left the cache in its /tmp: it goes back first. What it
            // built did not succeed, so it is not kept.
            if Files.list(work + "/tmp").contains(where: { $0.hasPrefix("build_") }) {
                finish(cache: work + "/tmp/codon/tmp/cache")
            }
            // Scratch and a killed build's staging go aside at once, to be removed while this
            // build runs: removing a real app's build (Node and Python: 7,000 files) takes many
            // seconds on a slow disk.
            // So does what a multipack before the kept/ layout left here (its config vars world-readable).
            let legacy = [
                "build", "env", "build.release.yml", "build.report.yml", "build.id", "slug.tgz", "slug.tgz.release.yml",
                "slug.tgz.env",
            ]
            for (index, old) in ([work, next.path] + legacy.map { path + "/" + $0 }).enumerated()
            where Files.lexists(old) {
                let aside = "\(path)/\(LocalState.replacedPrefix)\(getpid())-\(index)"
                Files.remove(aside)  // a killed build's, whose pid was the same
                try Files.move(old, to: aside)
            }
            try Files.makeDirectory(next.path)
            try LocalState.makePrivateDirectory(next.env)
            for directory in [work + "/tmp", work + "/home"] { try Files.makeDirectory(directory) }
            return fd
        }

        /// Removes what `begin` and `publish` put aside, and what a killed build put aside before.
        static func removeReplaced(in path: String) {
            for name in Files.list(path) where name.hasPrefix(LocalState.replacedPrefix) {
                Files.remove(path + "/" + name)
            }
        }

        /// Puts the app's cache back where it is kept, when it was moved into the build's /tmp.
        func finish(cache: String?) {
            if let cache, Files.isDirectory(cache), !Files.exists(self.cache) { try? Files.move(cache, to: self.cache) }
        }

        /// Removes the build's scratch: the running build directory, and what it staged to be
        /// kept when it did not succeed.
        func removeScratch() {
            Files.remove(work)
            Files.remove(next.path)
        }

        /// Makes the staged build the kept one, in one rename; the one it replaces goes aside
        /// for `removeReplaced`.
        func publish() throws {
            let aside = "\(path)/\(LocalState.replacedPrefix)\(getpid())-kept"
            Files.remove(aside)
            if Files.exists(kept.path),
                multipack_rename(next.path, kept.path, UInt32(MULTIPACK_RENAME_EXCHANGE)) == 0
            {
                try Files.move(next.path, to: aside)
                return
            }
            // A file system without renameat2's exchange: the old one goes aside first.
            if Files.exists(kept.path) { try Files.move(kept.path, to: aside) }
            try Files.move(next.path, to: kept.path)
        }

        /// What the log says about the kept build when a build did not replace it.
        /// `target`: what `run` takes for it (a commit's slug; the app by default).
        func keptDescription(appDir: String, runTarget target: String? = nil) -> String {
            guard Files.isDirectory(kept.build), let id = try? Files.read(kept.buildID) else {
                return "No build of \(appDir) is kept: none has succeeded yet."
            }
            return "The last successful build (\(id.trimmingCharacters("\n"))) is kept as it was: "
                + "\(CommandName.line(["run", target ?? appDir])) still runs it."
        }
    }

    /// A build kept for `run` and `report`, or staged to be.
    struct Kept {
        var path: String
        var build: String { path + "/build" }
        var env: String { path + "/env" }
        var buildID: String { path + "/build.id" }
        var report: String { path + "/build.report.yml" }
        var root: String { path + "/build.root.json" }
        var release: String { LocalState.releaseSidecar(for: build) }
        var slug: String { path + "/slug.tgz" }
        /// Where `--slug` wrote the slug, when it did.
        var slugPath: String { path + "/slug.path" }

        /// The slug this build wrote: `--slug`'s path, or its own.
        var slugLocation: String? {
            if let text = try? Files.read(slugPath), !text.isEmpty { return text.trimmingCharacters("\n") }
            return Files.isRegularFile(slug) ? slug : nil
        }
    }

    /// What `begin` puts aside in an app's state directory.
    static let replacedPrefix = ".replaced-"

    static func sidecars(of path: String) -> [String] { [releaseSidecar(for: path), configSidecar(for: path)] }

    /// Config vars as dotenv lines `DotEnv.parse` reads back.
    static func dotenv(_ vars: [(key: String, value: String)]) -> String {
        vars.map { key, value in
            let escaped = value.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"")
                .replacing("\n", with: "\\n").replacing("\t", with: "\\t")
            return "\(key)=\"\(escaped)\"\n"
        }.joined()
    }
}

/// `multipack cache purge [APP_DIR]`: empties one app's cache, or every app's.
public struct CachePurge {
    public var appDir: String?
    public var invocation: Invocation

    public init(appDir: String?, invocation: Invocation) {
        self.appDir = appDir
        self.invocation = invocation
    }

    public func run() throws {
        let env = invocation.environment
        if let appDir, !Files.isDirectory(appDir), let repository = AppRepository.parse(appDir) {
            return try purge(repository)
        }
        let target = appDir.map { LocalState.appDirectory(for: $0, environment: env) } ?? LocalState.appsRoot(env)
        let what = appDir.map { "the cache of \(Files.absolute($0))" } ?? "every app's cache"
        guard Files.exists(target) else {
            invocation.log.step("Nothing to purge: there is no \(what) (\(target)).")
            return
        }
        try Files.removeTree(target)
        invocation.log.step("Purged \(what): removed \(target)")
    }
}
