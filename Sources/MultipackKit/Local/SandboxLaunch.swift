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
    /// What the build stands on: the stack's image, a stack root, or this machine.
    var root: BuildRoot
    /// nil: no namespace here; the build runs on this machine.
    var sandbox: Sandbox?
    /// Who the buildpacks run as: uid 1000 inside; for root, an id that owns nothing outside.
    var user: BuildUser
    /// The app's state, and the build's directory and cache while it runs.
    var state: LocalState.App
    var id: String
    var running: (build: String, cache: String)

    /// The stack the build is told it runs on.
    var stack: String { root.record.stack }
    var inside: Bool { sandbox != nil }
    /// The build directory and multipack's own work directory as the stages see them.
    var buildDir: String { inside ? "/tmp/" + id : running.build }
    var workDir: String { inside ? "/tmp/multipack" : state.work + "/tmp/multipack" }

    /// The root (SPEC §15: the stack's image unless another is named) and the namespace's maker;
    /// says so when there is none.
    init(
        options: LocalBuildOptions, ci: Bool, caller: [String: String], callerDir: String,
        workspace: LocalWorkspace, context: BuildContext
    ) throws {
        self.options = options
        self.ci = ci
        self.caller = caller
        self.callerDir = callerDir
        (state, id, running) = (workspace.state, workspace.id, workspace.running)
        user = try BuildUser.current()
        let backend = Sandbox.backend(caller, user: user)
        root = try BuildRoot.choose(
            options.stackChoice, role: .build, strict: ci || BuildRoot.isCI(caller),
            unavailable: Sandbox.reason(backend), caller: caller, log: context.log)
        switch backend {
        case .success(let backend):
            sandbox = Sandbox(
                backend: backend, user: user, root: root.directory, tmp: state.work + "/tmp",
                app: state.work + "/home")
        case .failure(let unavailable):
            if !options.mounts.isEmpty {
                throw Mount.needNamespace(unavailable)
            }
            sandbox = nil
            context.log.warning(
                "No namespaces here (\(unavailable.reason)): the build runs on this machine as "
                    + (user.isIsolated ? "uid \(user.uid) (never as root)" : "you")
                    + ", with HOME=\(state.work)/home instead of /app, BUILD_DIR \(running.build) instead of /tmp/\(id), "
                    + "and /app does not exist." + unavailable.fixSentence)
        }
    }

    /// Heroku's build environment (SPEC §15), CI's variables for `ci`; git's configuration
    /// trusts the local repositories at `localPaths` for root's builds.
    func environment(sourceVersion: String?, localPaths: [String]) throws -> [String: String] {
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
        // A copy among the build's directories (the caller's own file may be private to it),
        // which the build's user reaches as it reaches them.
        if let gitConfig = HerokuEnvironment.buildGitConfig(caller, trusting: user.isIsolated ? localPaths : []) {
            try Files.makeDirectory(state.work + "/tmp/multipack")
            try Files.write(gitConfig, to: state.work + "/tmp/multipack/gitconfig")
            environment["GIT_CONFIG_GLOBAL"] = workDir + "/gitconfig"
        }
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
            ci: ci, entries: choice.entries, listName: choice.source.shown, appDir: options.appDir,
            entriesBase: entriesBase, build: buildDir,
            cache: cache, env: inside ? "/tmp/env" : state.next.env, work: workDir, outcome: workDir + "/outcome.json")
        let localPaths =
            StagesJob.localPaths(choice.entries, base: entriesBase) + StagesJob.localPaths(listed, base: options.appDir)
        var command = Command(
            LocalBuild.executablePath(), ["stages", String(decoding: try JSONEncoder().encode(job), as: UTF8.self)],
            in: inside ? "/app" : state.work + "/home",
            environment: try environment(sourceVersion: sourceVersion, localPaths: localPaths),
            stdout: .inherit, stderr: .inherit)
        var sandbox = sandbox.map { bindings(in: $0, job: job, localPaths: localPaths, command: &command) }
        command.stopsItself = true
        // Without a PID namespace, what the build leaves running is stopped before anything of
        // it is read or handed back.
        if sandbox == nil { command.owner = "The build" }
        // A signal that came while the app was copied would reach only bubblewrap, which ignores it.
        try context.stop.check()
        let handover = try grantAccess(
            sandbox: &sandbox, cache: options.cacheDir.map(Files.absolute), reads: [options.appDir] + localPaths,
            log: context.log)
        if let sandbox {
            command = sandbox.wrap(command)
        } else if user.isIsolated {
            command.namespace = NamespacePlan(idsOf: user)
        }
        let result = try handover.during { try Sandbox.run(command, in: context) }
        // Read as the caller, from where the build could write: no link followed on the way, and
        // no more than an outcome holds (a buildpack may leave a sparse file of any size there).
        let text = try? Files.read("multipack/outcome.json", beneath: state.work + "/tmp", limit: 64 << 20)
        let outcome = text.flatMap { try? JSONDecoder().decode(StagesJob.Outcome.self, from: Data($0.utf8)) }
        return (result, outcome)
    }

    /// `sandbox` with what the stages read bound in: multipack itself (which `command` then runs),
    /// the cache, the config vars, the app, the local buildpacks, the SSH agent and `--mount`'s.
    private func bindings(
        in sandbox: Sandbox, job: StagesJob, localPaths: [String], command: inout Command
    ) -> Sandbox {
        var sandbox = sandbox
        let multipack = sandbox.bindMultipack(at: workDir + "/multipack")
        command.executable = multipack[0]
        command.arguments = multipack.dropFirst() + command.arguments
        if let own = options.cacheDir {
            sandbox.bind(Files.absolute(own), at: job.cache, writable: true, owned: true)
        }
        sandbox.bind(state.next.env, at: job.env, owned: true)
        sandbox.bind(options.appDir)
        for path in localPaths { sandbox.bind(path) }
        if let socket = caller["SSH_AUTH_SOCK"], socket.hasPrefix("/") {
            sandbox.bind(socket, at: Sandbox.sshAgent, writable: true, owned: true)
            command.environment["SSH_AUTH_SOCK"] = Sandbox.sshAgent
        }
        sandbox.bind(options.mounts)
        return sandbox
    }

    /// The caller's directories as the build's user reaches them (SPEC §15, "Not root, for
    /// real"): for a root caller, idmapped into the namespace (or handed over where they cannot
    /// be), or without namespaces handed over, after a check that the build's user can reach
    /// them at all. Nothing for anyone else: the build runs as the caller.
    private func grantAccess(sandbox: inout Sandbox?, cache: String?, reads: [String], log: Log) throws -> Handover {
        guard user.isIsolated else { return Handover(user: user) }
        // Only root (and, handed over, the build's user) may pass: what the build makes there
        // through an idmapped mount is root's until the walk back has checked it.
        guard chmod(state.work, 0o700) == 0 else { throw FileError(path: state.work, action: "protect", errno: errno) }
        if var configured = sandbox {
            log.detail(
                "Buildpacks run as uid \(BuildUser.insideUID) inside, \(user.uid) outside: root's files are out of their reach"
            )
            defer { sandbox = configured }
            return try configured.grantOwnedBinds(marker: state.handoverMarker)
        }
        log.detail("Buildpacks run as uid \(user.uid): root's files are out of their reach")
        let handed = [state.work, state.next.env] + (cache.map { [$0] } ?? [])
        // What is handed over becomes the build's user's; what leads to it must let it through.
        // The app's state is private (0700: config vars): that user alone is let through it.
        let appsRoot = LocalState.appsRoot(caller) + "/"
        var passages: [String] = []
        for path in handed.map(Files.parent(of:)) + reads + [LocalBuild.executablePath()] {
            var closed = user.firstClosedDirectory(on: path, open: passages)
            while let directory = closed, directory.hasPrefix(appsRoot) {
                passages.append(directory)
                closed = user.firstClosedDirectory(on: path, open: passages)
            }
            guard let closed else { continue }
            throw MultipackError.build(
                "Without namespaces, a build run by root runs its buildpacks as uid \(user.uid), which cannot reach \(path): "
                    + "\(closed) is closed to it.",
                hint: "Keep multipack's state where every user may pass (XDG_CACHE_HOME=/var/cache), the app, its "
                    + "buildpacks and multipack where every user may read them, or allow namespaces; or run multipack as "
                    + "an ordinary user.")
        }
        return try Handover.begin(
            user: user, handed: handed, idmapped: [], passages: passages, marker: state.handoverMarker)
    }
}
