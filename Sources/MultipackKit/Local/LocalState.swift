import Glibc

/// Where local builds keep things between runs: one directory per app under the user's cache
/// directory (`$XDG_CACHE_HOME/multipack/apps/<name>-<hash>`). It holds the app's cache and its
/// last build, which the next build replaces (SPEC §12): nothing of a build is left in TMPDIR.
///
///     cache/                   CACHE_DIR, kept between builds
///     build/                   the last build directory (BUILD_DIR, /tmp/build_<hex> inside)
///     build.release.yml        its release, with the final process types, for `multipack run`
///     build.report.yml         `bin/report`'s output
///     build.id                 `build_<hex> <time>`: which build it was
///     env/                     ENV_DIR: the config vars it was given, for `multipack run`
///     slug.tgz (+ sidecars)    the slug, unless `--slug` put it elsewhere
///     work/                    the build's scratch (`/tmp` and `/app` inside), removed at its end
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

    /// One app's state directory.
    struct App {
        var path: String
        /// CACHE_DIR between builds: the app's own, or for a commit of a repository the
        /// repository's, which its commits share (`CommitOrigin`).
        var cache: String
        init(appDir: String, environment: [String: String]) {
            path = LocalState.appDirectory(for: appDir, environment: environment)
            cache = path + "/cache"
        }
        init(path: String, cache: String) {
            self.path = path
            self.cache = cache
        }

        /// The state of what `options` build: a directory's, or a commit's (SPEC §19).
        init(options: LocalBuildOptions, environment: [String: String]) {
            if let origin = options.origin {
                self.init(path: origin.state, cache: origin.cache)
            } else {
                self.init(appDir: options.appDir, environment: environment)
            }
        }
        var build: String { path + "/build" }
        var env: String { path + "/env" }
        var work: String { path + "/work" }
        var slug: String { path + "/slug.tgz" }
        var buildID: String { path + "/build.id" }
        var report: String { path + "/build.report.yml" }
        var release: String { LocalState.releaseSidecar(for: build) }

        /// Takes the app's lock (one build of an app at a time) and clears the previous build.
        func begin() throws -> Int32 {
            try Files.makeDirectory(path)
            let fd = open(path + "/.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw FileError(path: path + "/.lock", action: "open", errno: errno) }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                close(fd)
                throw MultipackError.usage(
                    "Another multipack build of this app is running (it holds \(path)/.lock).",
                    hint: "Wait for it to finish, or stop it.")
            }
            // A build that was killed left the cache in its /tmp: it goes back first.
            for leftover in Files.list(work + "/tmp") where leftover.hasPrefix("build_") {
                finish(build: work + "/tmp/" + leftover, cache: work + "/tmp/codon/tmp/cache")
            }
            // The previous build and scratch go aside at once, to be removed while this build runs:
            // removing a real app's build (Node and Python: 7,000 files) takes many seconds on a slow disk.
            for (index, old) in [build, work].enumerated() where Files.exists(old) {
                let aside = "\(path)/\(LocalState.replacedPrefix)\(getpid())-\(index)"
                Files.remove(aside)  // a killed build's, whose pid was the same
                try Files.move(old, to: aside)
            }
            for old in [env, buildID, report, release, slug] + LocalState.sidecars(of: slug) {
                if Files.exists(old) { try Files.removeTree(old) }
            }
            for directory in [build, env, work + "/tmp", work + "/home"] { try Files.makeDirectory(directory) }
            return fd
        }

        /// Removes what `begin` put aside, and what a killed build put aside before.
        static func removeReplaced(in path: String) {
            for name in Files.list(path) where name.hasPrefix(LocalState.replacedPrefix) {
                Files.remove(path + "/" + name)
            }
        }

        /// Puts the build directory (and the app's cache, when it was moved into the build's
        /// /tmp) where they are kept, and removes the build's scratch.
        func finish(build running: String, cache: String?) {
            if Files.isDirectory(running) {
                Files.remove(build)
                try? Files.move(running, to: build)
            }
            if let cache, Files.isDirectory(cache), !Files.exists(self.cache) { try? Files.move(cache, to: self.cache) }
            if !Files.exists(running) { Files.remove(work) }
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
