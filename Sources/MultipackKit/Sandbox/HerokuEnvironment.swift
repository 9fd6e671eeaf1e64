import FoundationEssentials
import Glibc

/// What Heroku's slug compiler and dynos put in the environment (SPEC §15), and the few of the
/// caller's variables a local build keeps: the network settings multipack's own fetches use.
enum HerokuEnvironment {
    static let path = "/usr/local/bin:/usr/bin:/bin"
    static let lang = "en_US.UTF-8"

    /// Proxies and the SSH agent (SPEC §5). git's configuration comes as `GIT_CONFIG_GLOBAL`.
    static let networkNames = [
        "http_proxy", "https_proxy", "no_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
        "SSH_AUTH_SOCK",
    ]

    /// What a build's environment sets itself, which `--pass-env` cannot replace.
    static let buildOwn: Set<String> = ["HOME", "PATH", "STACK", "SOURCE_VERSION", "REQUEST_ID", "CI"]

    /// A build's: HOME=/app, LANG, PATH, STACK, SOURCE_VERSION (when the app is a repository),
    /// REQUEST_ID, BUILDPACK_XTRACE when set, the network settings, and multipack's own
    /// `MULTIPACK_*` settings, which configure multipack itself.
    static func build(stack: String, sourceVersion: String?, caller: [String: String]) -> [String: String] {
        var env = network(caller)
        for (name, value) in caller where name.hasPrefix("MULTIPACK_") && !outerOnly.contains(name) {
            env[name] = value
        }
        env["HOME"] = "/app"
        env["LANG"] = lang
        env["PATH"] = path
        env["STACK"] = stack
        env["SOURCE_VERSION"] = sourceVersion
        env["REQUEST_ID"] = UUID().uuidString.lowercased()
        env["BUILDPACK_XTRACE"] = caller["BUILDPACK_XTRACE"]
        return env
    }

    /// multipack's settings that only the `multipack build` outside reads: what the build stands on.
    static let outerOnly: Set<String> = [
        HiddenVariable.sandbox, StackChoice.rootVariable, ImageReference.mirrorVariable,
    ]

    static func network(_ caller: [String: String]) -> [String: String] {
        var env: [String: String] = [:]
        for name in networkNames { env[name] = caller[name] }
        return env
    }

    /// The build's global git configuration: the caller's (copied: the build's user may not read
    /// the original), and the local repositories the build fetches from named safe: git refuses
    /// to read a repository its user does not own, as root's are for a root caller's build.
    /// Nil when there is nothing to say.
    static func buildGitConfig(_ caller: [String: String], trusting repositories: [String]) -> String? {
        let own = gitConfig(caller).flatMap { try? Files.read($0) }
        let safe = repositories.compactMap { path -> String? in
            guard let real = realpath(path, nil) else { return nil }
            defer { free(real) }
            let resolved = String(cString: real)
            guard Files.exists(resolved + "/.git") || Files.isRegularFile(resolved + "/HEAD") else { return nil }
            return "\tdirectory = \(resolved)\n\tdirectory = \(resolved)/.git\n"
        }
        guard own != nil || !safe.isEmpty else { return nil }
        return (own.map { $0 + "\n" } ?? "") + (safe.isEmpty ? "" : "[safe]\n" + safe.joined())
    }

    /// The caller's global git configuration file, if there is one.
    static func gitConfig(_ caller: [String: String]) -> String? {
        if let explicit = caller["GIT_CONFIG_GLOBAL"], !explicit.isEmpty { return Files.absolute(explicit) }
        var candidates: [String] = []
        if let home = caller["HOME"], !home.isEmpty { candidates.append(home + "/.gitconfig") }
        let xdg = caller["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? caller["HOME"].map { $0 + "/.config" }
        if let xdg { candidates.append(xdg + "/git/config") }
        return candidates.first { Files.isRegularFile($0) }
    }
}
