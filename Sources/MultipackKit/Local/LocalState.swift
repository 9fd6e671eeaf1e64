import Glibc

/// Where local builds keep things between runs: one directory per app under the user's cache
/// directory (`$XDG_CACHE_HOME/multipack/apps/<name>-<hash>`), holding its cache and a pointer to
/// its last build.
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

    static func lastBuildPointer(_ stateDir: String) -> String { stateDir + "/last-build" }

    /// The release a build leaves for `multipack run`, next to what it describes (never inside
    /// it: the slug holds `./app/` only, and a build directory is the app's HOME at run time).
    public static func releaseSidecar(for path: String) -> String { path + ".release.yml" }
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
