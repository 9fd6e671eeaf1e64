/// The app's `bin/pre_compile` and `bin/post_compile` (SPEC §7.4): held back from the children
/// for the whole build and run exactly once each by multipack.
struct AppHooks {
    static let names = ["pre_compile", "post_compile"]
    /// Config vars a hook does not get from ENV_DIR, as on Heroku.
    static let withheld: Set<String> = [
        "PATH", "GIT_DIR", "CPATH", "CPPATH", "LD_PRELOAD", "LIBRARY_PATH", "LD_LIBRARY_PATH",
    ]

    var dirs: BuildDirectories
    /// Where the held-back hooks wait, outside BUILD_DIR.
    var holdingDir: String
    var held: [String] = []

    /// Moves the hooks out of BUILD_DIR/bin so that no child sees them.
    mutating func holdBack() throws {
        try Files.makeDirectory(holdingDir)
        for name in Self.names where Files.exists(dirs.build + "/bin/" + name) {
            try Files.move(dirs.build + "/bin/" + name, to: holdingDir + "/" + name)
            held.append(name)
        }
    }

    /// Puts the hooks back where they were; runs on failure too.
    mutating func restore() {
        for name in held { try? Files.move(holdingDir + "/" + name, to: dirs.build + "/bin/" + name) }
        held = []
    }

    func has(_ name: String) -> Bool { held.contains(name) }

    static func environment(base: [String: String], dirs: BuildDirectories, configVars: [String: String]) -> [String:
        String]
    {
        var env = base
        for (name, value) in configVars where !withheld.contains(name) { env[name] = value }
        env["BUILD_DIR"] = dirs.build
        env["CACHE_DIR"] = dirs.cache
        env["ENV_DIR"] = dirs.env
        return env
    }

    /// Runs one hook with cwd BUILD_DIR; a hook without its executable bit runs with bash.
    func run(_ name: String, environment: [String: String], log: Log, trace: (Command) -> Void) throws -> Double {
        let path = holdingDir + "/" + name
        var command =
            Files.isExecutable(path)
            ? Command(path, [], in: dirs.build, environment: environment, stdout: .inherit, stderr: .inherit)
            : Command("bash", [path], in: dirs.build, environment: environment, stdout: .inherit, stderr: .inherit)
        command.owner = "The app's bin/\(name)"
        log.step("Running bin/\(name)")
        trace(command)
        let result: ProcessResult
        do {
            result = try Spawner.run(command)
        } catch {
            throw BuildFailure("The app's bin/\(name) could not be started: \(ErrorReport.reason(error))")
        }
        if SignalForwarding.stopSignal != nil {
            var interrupted = Interrupted()
            interrupted.context = "while the app's bin/\(name) was running"
            throw interrupted
        }
        guard result.termination.succeeded else {
            throw BuildFailure(
                "The app's bin/\(name) hook failed with \(result.termination)",
                details: ["Stage: \(name)"],
                hint: "bin/\(name) is your app's own script; its output above says why.")
        }
        return result.seconds
    }
}
