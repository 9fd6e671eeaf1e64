import FoundationEssentials
import Glibc

/// Starts a local build's stages (the hidden verb `multipack stages JOB`) where the buildpacks see
/// Heroku's layout (SPEC §15): in a namespace on the stack's root, with the build directory at
/// `/tmp/build_<hex>`, the cache, the config vars, the app and the local buildpacks bound in; or,
/// where no namespace can be made, on this machine with the same directories in the app's state.
struct SandboxLaunch {
    var options: LocalBuildOptions
    var ci: Bool
    var caller: [String: String]
    /// `--pass-env`: the caller's variables the buildpacks get.
    var passed: [(key: String, value: String)] = []
    /// Where `multipack build` was started (relative `--buildpack` paths are relative to it).
    var callerDir: String
    var stackRoot: StackRoot?
    /// nil: no namespace here; the build runs on this machine.
    var sandbox: Sandbox?
    /// The app's state, and the build's directory and cache while it runs.
    var state: LocalState.App
    var id: String
    var running: (build: String, cache: String)

    /// The stack the build is told it runs on.
    var stack: String { stackRoot?.stack ?? options.stack }
    var inside: Bool { sandbox != nil }
    /// The build directory and multipack's own work directory as the stages see them.
    var buildDir: String { inside ? "/tmp/" + id : running.build }
    var workDir: String { inside ? "/tmp/multipack" : state.work + "/tmp/multipack" }
    /// Where the stages leave their outcome, as this process sees it.
    var outcomePath: String { state.work + "/tmp/multipack/outcome.json" }

    /// The stack root (`--stack-root`) and the namespace's maker; says so when there is none.
    init(
        options: LocalBuildOptions, ci: Bool, caller: [String: String], callerDir: String,
        workspace: LocalWorkspace, context: BuildContext
    ) throws {
        self.options = options
        self.ci = ci
        self.caller = caller
        self.callerDir = callerDir
        (state, id, running) = (workspace.state, workspace.id, workspace.running)
        stackRoot = try options.stackRoot.map { try StackRoot.prepare($0, caller: caller, log: context.log) }
        switch Sandbox.backend(caller) {
        case .success(let backend):
            sandbox = Sandbox(
                backend: backend, root: stackRoot?.directory ?? "/", tmp: state.work + "/tmp",
                app: state.work + "/home")
        case .failure(let unavailable):
            if stackRoot != nil {
                throw MultipackError.usage(
                    "--stack-root needs a user namespace, and this machine gives none: \(unavailable.reason).",
                    hint:
                        "Install bubblewrap (apt-get install bubblewrap) and allow user namespaces, or build without --stack-root."
                )
            }
            if !options.mounts.isEmpty {
                throw Mount.needNamespace(unavailable)
            }
            sandbox = nil
            context.log.warning(
                "No namespaces here (\(unavailable.reason)): the build runs on this machine as you, with HOME=\(state.work)/home "
                    + "instead of /app, BUILD_DIR \(running.build) instead of /tmp/\(id), and /app does not exist.")
        }
    }

    /// Heroku's build environment (SPEC §15), CI's variables for `ci`.
    func environment(sourceVersion: String?) -> [String: String] {
        var environment = HerokuEnvironment.build(stack: stack, sourceVersion: sourceVersion, caller: caller)
        for (name, value) in passed { environment[name] = value }
        if ci {
            environment["CI"] = "true"
            environment["HEROKU_TEST_RUN_ID"] = UUID().uuidString.lowercased()
            if let sourceVersion { environment["HEROKU_TEST_RUN_COMMIT_VERSION"] = sourceVersion }
        }
        if !inside {
            environment["HOME"] = state.work + "/home"
            environment["TMPDIR"] = state.work + "/tmp"
        }
        let gitConfig = HerokuEnvironment.gitConfig(caller)
        environment["GIT_CONFIG_GLOBAL"] = inside ? gitConfig.map { _ in workDir + "/gitconfig" } : gitConfig
        // Inside, the binary has another path: hints name it as the user started it.
        environment[HiddenVariable.commandName] = CommandName.current
        return environment
    }

    /// Runs the stages over the filled `workspace` to their end and reads what they left (nil when
    /// they were killed first).
    func run(
        _ workspace: LocalWorkspace, choice: BuildpackChoice, listed: [BuildpackEntry], sourceVersion: String?,
        in context: BuildContext
    ) throws -> (result: ProcessResult, outcome: StagesJob.Outcome?) {
        let cache = inside ? "/tmp/codon/tmp/cache" : workspace.cache == state.cache ? running.cache : workspace.cache
        let entriesBase = choice.source == .commandLine ? callerDir : options.appDir
        let job = StagesJob(
            ci: ci, entries: choice.entries, appDir: options.appDir, entriesBase: entriesBase, build: buildDir,
            cache: cache, env: inside ? "/tmp/env" : state.next.env, work: workDir, outcome: workDir + "/outcome.json")
        var command = Command(
            LocalBuild.executablePath(), ["stages", String(decoding: try JSONEncoder().encode(job), as: UTF8.self)],
            in: inside ? "/app" : state.work + "/home", environment: environment(sourceVersion: sourceVersion),
            stdout: .inherit, stderr: .inherit)
        if var sandbox {
            let executable = workDir + "/multipack"
            sandbox.bind(LocalBuild.executablePath(), at: executable)
            command.executable = executable
            if let own = options.cacheDir { sandbox.bind(Files.absolute(own), at: job.cache, writable: true) }
            sandbox.bind(state.next.env, at: job.env)
            sandbox.bind(options.appDir)
            for path in StagesJob.localPaths(choice.entries, base: entriesBase)
                + StagesJob.localPaths(listed, base: options.appDir)
            {
                sandbox.bind(path)
            }
            if let gitConfig = HerokuEnvironment.gitConfig(caller) {
                sandbox.bind(gitConfig, at: workDir + "/gitconfig")
            }
            if let socket = caller["SSH_AUTH_SOCK"], socket.hasPrefix("/") { sandbox.bind(socket, writable: true) }
            sandbox.bind(options.mounts)
            if stackRoot != nil { sandbox.hostDirectories = Sandbox.runtimeLibraryDirectories() }
            command = sandbox.wrap(command)
        }
        command.stopsItself = true
        // A signal that came while the app was copied would reach only bubblewrap, which ignores it.
        try context.stop.check()
        let result = try Sandbox.run(command, in: context)
        let outcome = (try? context.files.read(outcomePath)).flatMap {
            try? JSONDecoder().decode(StagesJob.Outcome.self, from: Data($0.utf8))
        }
        return (result, outcome)
    }
}
