import FoundationEssentials
import Glibc

/// `multipack run SLUG|APP_DIR [TYPE …] [-- COMMAND …]`: process types, or a one-off command, the
/// way a Heroku dyno starts them (SPEC §12, §15, §17): the slug at `/app` in a private namespace,
/// `HOME=/app`, `PORT`, `DYNO`, the config vars the build was given, the app's `.env` and `-e`,
/// then `.profile.d/*.sh` and `.profile` sourced in order. An app directory means its last build.
/// No type runs them all together as `heroku local` does; one type runs it alone. With no app,
/// a command runs on the stack's build image with an empty writable `/app` (SPEC §19).
public struct LocalRun {
    /// A slug or an app's directory; nil: no app (`multipack run -- COMMAND`).
    public var target: String?
    /// The process types named; none: every type of the Procfile but `release`.
    public var processes: [String] = []
    /// `-- COMMAND …`: a one-off command instead of process types.
    public var command: [String] = []
    /// `--env K=V` and `--env-file FILE`, read when the run starts.
    public var configArguments = ConfigVarArguments()
    /// `-p/--port`: the first type's PORT; each next type's is 100 more.
    public var port = 5000
    /// `-f/--procfile`: another Procfile than the app's.
    public var procfile: String?
    /// `--grace`: seconds between SIGTERM and SIGKILL when the processes are stopped.
    public var graceSeconds = 30
    /// `--mount HOST:PATH[:ro]`: the caller's directories bound inside.
    public var mounts: [Mount] = []
    /// `--stack-image`, `--stack-root` and `--stack`: what the process runs on. With no `--stack`,
    /// an app's last build says which stack (SPEC §15); a slug runs on heroku-24's.
    public var stackChoice = StackChoice()
    public var stack: String?
    public var invocation: Invocation

    public init(target: String?, invocation: Invocation) {
        self.target = target.map(Files.absolute)
        self.invocation = invocation
    }

    /// Slugs hold whole dependency trees: far more members than a buildpack archive.
    static let slugLimits = ArchiveLimits(maxTotalBytes: 16 << 30, maxEntries: 5_000_000)

    /// multipack's own lines go to stderr: stdout is the process's.
    var log: Log {
        let write = invocation.log.write
        return Log { text, _ in write(text, 2) }
    }

    /// What is run: the app's files, its release, the build's config vars and the app's `.env`.
    struct Source {
        var home: String
        var release: Release
        var buildConfig: [(key: String, value: String)]
        var dotenv: String?
        /// The `.env` is the app's own (not one a build wrote): a link there is followed.
        var dotenvIsTheApps = false
        /// The stack the kept build was made for.
        var stack: String?
    }

    /// Runs the processes and returns the exit code (128 + the signal when a signal ended it).
    public func run() throws -> Int32 {
        let target = self.target ?? ""
        if self.target == nil, command.isEmpty { throw Self.nothingToRun }
        if !command.isEmpty, !processes.isEmpty {
            throw MultipackError.usage(
                "multipack run takes process types or a one-off command after --, not both.",
                hint:
                    "\(CommandName.line(["run", target, "web"])), or \(CommandName.line(["run", target, "--", "bash"]))"
            )
        }
        if let stack, !LocalBuildOptions.stacks.contains(stack) {
            throw MultipackError.usage(
                "--stack \(Masking.text(stack)) is not a Heroku stack.",
                hint: "Give one of \(LocalBuildOptions.stacks.joined(separator: ", ")).")
        }
        try stackChoice.validate(caller: invocation.environment)
        guard (0...86400).contains(graceSeconds) else {
            throw MultipackError.usage("--grace takes seconds, 0 to 86400.", hint: "Heroku gives a dyno 30.")
        }
        guard (1...65535).contains(port) else {
            throw MultipackError.usage("--port takes a TCP port, 1 to 65535.", hint: "heroku local uses 5000.")
        }
        ScratchDirectory.sweepTemporaryRoot()
        let scratchDirectory = try ScratchDirectory(.run)
        defer { scratchDirectory.remove() }
        let scratch = scratchDirectory.path
        let source = try resolve(scratch: scratch)
        let types = command.isEmpty ? try selectedTypes(source) : []

        // As a build's: uid 1000 inside; for root, an id that owns nothing outside.
        let user = try BuildUser.current()
        var sandbox: Sandbox?
        let backend = Sandbox.backend(invocation.environment, user: user)
        var choice = stackChoice
        choice.stack = stack ?? source.stack ?? choice.stack
        // With no app, the stack's build image: a dyno's one-off command where buildpacks build.
        let root = try BuildRoot.choose(
            choice, role: self.target == nil ? .build : .run, strict: BuildRoot.isCI(invocation.environment),
            unavailable: Sandbox.reason(backend),
            caller: invocation.environment, log: log, running: true)
        defer { withExtendedLifetime(root) {} }
        switch backend {
        case .success(let backend):
            try Files.makeDirectory(scratch + "/tmp")
            sandbox = Sandbox(
                backend: backend, user: user, root: root.directory, tmp: scratch + "/tmp", app: source.home)
            sandbox?.bind(mounts)
        case .failure(let unavailable):
            if !mounts.isEmpty || self.target == nil {
                throw Self.needNamespace(unavailable, for: !mounts.isEmpty ? "--mount" : "A run with no app")
            }
            log.warning(
                "No namespaces here (\(unavailable.reason)): the processes run on this machine as "
                    + (user.isIsolated ? "uid \(user.uid) (never as root)" : "you")
                    + ", in \(source.home) with HOME=\(source.home) instead of /app." + unavailable.fixSentence)
        }
        let handedMounts = try grantScratch(scratch, to: user, sandbox: &sandbox)
        defer { handedMounts?.end() }
        // Where the app is as the processes see it.
        let app = sandbox == nil ? source.home : "/app"
        let launch = DynoLaunch(
            sandbox: sandbox, tmp: scratch + "/tmp", context: invocation.context, log: log,
            grace: .seconds(graceSeconds), runAs: sandbox == nil && user.isIsolated ? user : nil)
        func member(
            _ name: String, port: Int, script: String, arguments: [String] = [], environment: [String: String]
        ) -> Formation.Member {
            var environment = environment
            environment["HOME"] = app
            environment["PORT"] = String(port)
            environment["DYNO"] = name + ".1"
            if self.target == nil { environment["STACK"] = root.stack ?? choice.stack }
            return Formation.Member(
                name: name + ".1", executable: "bash",
                arguments: ["-c", Self.launchScript(home: source.home, app: app, command: script)] + arguments,
                directory: app, environment: environment)
        }

        if !command.isEmpty {
            let oneOff = member(
                "run", port: port, script: "exec \"$@\"", arguments: ["bash"] + command,
                environment: try dynoEnvironment(source))
            log.step("Starting run: \(command.joined(separator: " "))")
            log.detail("HOME=\(app) PORT=\(port) DYNO=run.1")
            // A terminal of its own whenever the caller's input is one, as `heroku run` gives.
            let code =
                isatty(0) == 1
                ? try launch.withTerminal(oneOff, window: WindowSize.of(0) ?? WindowSize.of(1))
                : try launch.single(oneOff, stdin: .inherit)
            log.step("run ended with \(Self.describe(code))")
            return code
        }
        if processes.count == 1, let (name, line) = types.first {
            log.step("Starting \(name): \(line)")
            log.detail("HOME=\(app) PORT=\(port) DYNO=\(name).1")
            let dyno = member(name, port: port, script: line, environment: try dynoEnvironment(source))
            let code = try launch.single(dyno, stdin: .null)
            log.step("\(name) ended with \(Self.describe(code))")
            return code
        }
        guard port + 100 * (types.count - 1) <= 65535 else {
            throw MultipackError.usage(
                "\(types.count) process types from PORT \(port) need ports up to \(port + 100 * (types.count - 1)), past 65535.",
                hint: "Give a lower first port (-p), or name the types to run.")
        }
        var members: [Formation.Member] = []
        log.step("Starting \(types.map(\.key).joined(separator: ", ")) together, as heroku local does")
        // Read once for all of them: an --env-file may be a pipe.
        let environment = try dynoEnvironment(source)
        for (index, (name, line)) in types.enumerated() {
            let typePort = port + 100 * index
            log.detail("\(name).1: \(line) (PORT=\(typePort))")
            members.append(member(name, port: typePort, script: line, environment: environment))
        }
        let code = try launch.formation(members, colors: isatty(1) == 1)
        log.step("Every process ended; run ends with \(Self.describe(code))")
        return code
    }

    static func describe(_ code: Int32) -> String {
        code > 128 && code < 128 + 65 ? "\(Termination.signaled(code - 128))" : "\(Termination.exited(code))"
    }

    /// The types to run, in the Procfile's order: those named, or with none every type of the
    /// Procfile but `release` (a buildpack's default types only without a Procfile, and then only
    /// `web`), as `heroku local` chooses them.
    func selectedTypes(_ source: Source) throws -> [(key: String, value: String)] {
        let target = self.target ?? ""
        let procfilePath = procfile.map(Files.absolute) ?? source.home + "/Procfile"
        if procfile != nil, !Files.isRegularFile(procfilePath) {
            throw MultipackError.usage(
                "-f \(procfilePath) is not a Procfile: there is no such file.",
                hint: "Give the path of a Procfile (`type: command` lines), relative to the current directory.")
        }
        // `-f` names the user's own file; the build's Procfile is never followed out of the build.
        let declared = try Procfile.read(procfilePath, followingLinks: procfile != nil)
        let all = Procfile.processTypes(release: source.release, procfile: declared)
        if processes.isEmpty {
            let chosen = declared.isEmpty ? all.filter { $0.key == "web" } : declared.filter { $0.key != "release" }
            guard !chosen.isEmpty else {
                throw MultipackError.usage(
                    "There is no process type to run in \(target): it has no Procfile and no web type.",
                    hint: all.isEmpty
                        ? "Add a Procfile to the app (`web: <command>`) and build it again, or give a command: \(CommandName.line(["run", target, "--", "bash"]))"
                        : "Name one: \(CommandName.line(["run", target, all[0].key])) (it has \(all.map(\.key).joined(separator: ", ")))."
                )
            }
            return chosen
        }
        let known = Set(all.map(\.key))
        for name in processes where !known.contains(name) {
            throw MultipackError.usage(
                "There is no process type `\(Masking.text(name))` in \(target).",
                hint: all.isEmpty
                    ? "It declares none: add a Procfile to the app (`web: <command>`) and build it again, or give a command: \(CommandName.line(["run", target, "--", "bash"]))"
                    : "It has: \(all.map(\.key).joined(separator: ", ")).")
        }
        let declaredNames = Set(declared.map(\.key))
        let order = declared.isEmpty ? all : declared + all.filter { !declaredNames.contains($0.key) }
        let named = Set(processes)
        return order.filter { named.contains($0.key) }
    }

    private func resolve(scratch: String) throws -> Source {
        guard let target else { return try emptyApp(scratch: scratch) }
        if Files.isRegularFile(target) {
            let dir = scratch + "/slug"
            try Files.makeDirectory(dir)
            log.step("Extracting the slug \(target) into \(dir)")
            do {
                try extractArchive(
                    atPath: target, into: dir, limits: Self.slugLimits, kind: .slug, stop: invocation.stop)
            } catch let stopped as StopRequested {
                throw MultipackError.interrupted(stopped.signal, "while the slug was being extracted")
            } catch {
                throw MultipackError.usage(
                    "\(target) is not a slug multipack can extract: \(MultipackError.reason(error))",
                    hint: "Give multipack run a slug that multipack build wrote, or the app's directory.")
            }
            let home = dir + "/app"
            guard Files.isDirectory(home) else {
                throw MultipackError.usage(
                    "\(target) is not a slug: it has no ./app/ directory.",
                    hint: "Give multipack run a slug that multipack build wrote, or the app's directory.")
            }
            let config = (try? Files.read(LocalState.configSidecar(for: target))).flatMap {
                try? DotEnv.parse($0, file: LocalState.configSidecar(for: target))
            }
            return Source(
                home: home, release: Self.release(at: LocalState.existingReleaseSidecar(for: target)),
                buildConfig: config ?? [], dotenv: home + "/.env")
        }
        guard Files.isDirectory(target) else {
            throw MultipackError.usage(
                "\(target) does not exist.",
                hint: "Give multipack run a slug that multipack build wrote, or an app's directory.")
        }
        // A build directory multipack build left (its release is beside it).
        if Files.exists(LocalState.releaseSidecar(for: target)) {
            let env = String(target[..<(target.lastIndex(of: "/") ?? target.endIndex)]) + "/env"
            return Source(
                home: try fresh(copyOf: target, scratch: scratch),
                release: Self.release(at: LocalState.releaseSidecar(for: target)),
                buildConfig: Self.configVars(in: env), dotenv: target + "/.env")
        }
        let state = LocalState.App(appDir: target, environment: invocation.environment).kept
        guard Files.isDirectory(state.build), Files.exists(state.release) else {
            throw MultipackError.build(
                "\(target) has no build to run: multipack keeps the last successful build of each app, and there is none"
                    + " (never built, the last build failed, or its cache was purged).",
                hint: "Build it first: \(CommandName.line(["build", target]))")
        }
        let which = (try? Files.read(state.buildID).trimmingCharacters("\n")) ?? "build"
        log.step("Using the last build of \(target): \(which) in \(state.build)")
        return Source(
            home: try fresh(copyOf: state.build, scratch: scratch), release: Self.release(at: state.release),
            buildConfig: Self.configVars(in: state.env), dotenv: target + "/.env", dotenvIsTheApps: true,
            stack: LocalReport.keptRoot(state)?.stack)
    }

    /// The run's scratch (a copy of the build) as a root caller's processes reach it: idmapped,
    /// or handed over. It is removed afterwards whoever owns it, so nothing is handed back.
    /// The mounts, handed over for the run, come back: they are to be ended after it.
    private func grantScratch(_ scratch: String, to user: BuildUser, sandbox: inout Sandbox?) throws -> RunHandover? {
        guard user.isIsolated else { return nil }
        if var granted = sandbox {
            defer { sandbox = granted }
            guard mounts.isEmpty else {
                RunHandover.recoverLeftovers(caller: invocation.environment)
                return try RunHandover.begin(&granted, caller: invocation.environment)
            }
            _ = try granted.grantOwnedBinds(marker: nil)
            return nil
        }
        // The scratch itself is handed over; what leads to it must let the processes through.
        if let closed = user.firstClosedDirectory(on: Files.parent(of: scratch)) {
            throw MultipackError.build(
                "Without namespaces, root runs the processes as uid \(user.uid), which cannot reach \(scratch): "
                    + "\(closed) is closed to it.",
                hint: "Set TMPDIR to a directory every user may pass (/tmp), or allow namespaces.")
        }
        _ = try Handover.begin(user: user, handed: [scratch], idmapped: [], marker: nil)
        return nil
    }

    /// A kept build is copied, never run in place: a dyno starts from the slug every time and
    /// what it writes is gone when it stops (Heroku's ephemeral filesystem), so one run cannot
    /// change what the next one, or the slug, sees.
    private func fresh(copyOf build: String, scratch: String) throws -> String {
        let home = scratch + "/app"
        do {
            try Files.copyTree(build, to: home)
        } catch {
            throw MultipackError.build(
                "Could not copy the build \(build) for the run: \(MultipackError.reason(error))",
                hint: "Check that \(scratch) has room for a copy of the build.")
        }
        return home
    }

    static func release(at path: String) -> Release {
        (try? Files.read(path)).flatMap { try? Release.parse($0) } ?? Release()
    }

    /// A build's config vars; a link among them is not followed, nor a file larger than config
    /// vars take read (a root caller's build without namespaces had the directory as its own).
    static func configVars(in envDir: String) -> [(key: String, value: String)] {
        Files.list(envDir).sorted().compactMap { name in
            (try? Files.readRegularFile(envDir + "/" + name, limit: DotEnv.maxBytes, followingLinks: false)).map {
                (name, String(decoding: $0, as: UTF8.self))
            }
        }
    }

    /// A dyno's environment but what each process has of its own (HOME, PORT, DYNO): PATH and LANG
    /// (TERM when there is one); then, each winning over the one before, the release's config vars,
    /// the build's, the app's `.env` (as `heroku local` reads it), `--env-file` and `--env`.
    func dynoEnvironment(_ source: Source) throws -> [String: String] {
        var env: [String: String] = [:]
        for (key, value) in source.release.configVars { env[key] = value }
        for (key, value) in source.buildConfig { env[key] = value }
        if let dotenv = source.dotenv, Files.lexists(dotenv) {
            let text: String
            do {
                // A `.env` a build wrote may link to any file on the machine, which multipack
                // reads as the caller: only the app's own is followed.
                text = String(
                    decoding: try Files.readRegularFile(
                        dotenv, limit: DotEnv.maxBytes, followingLinks: source.dotenvIsTheApps), as: UTF8.self)
            } catch {
                throw MultipackError.usage(
                    "The app's .env: " + DotEnv.readProblem(error, file: dotenv),
                    hint: "Make .env a dotenv file (KEY=VALUE lines), as `heroku local` reads it, or remove it.")
            }
            for (key, value) in try DotEnv.parse(text, file: dotenv) { env[key] = value }
        }
        for (key, value) in try configArguments.resolve(environment: invocation.environment) { env[key] = value }
        env["PATH"] = HerokuEnvironment.path
        env["LANG"] = env["LANG"] ?? HerokuEnvironment.lang
        if let term = invocation.environment["TERM"] { env["TERM"] = term }
        return env
    }

    /// `.profile.d/*.sh` in byte order, then `.profile`, then the command, all in one bash, as
    /// Heroku's dyno launcher does.
    static func launchScript(home: String, app: String, command: String) -> String {
        var lines: [String] = []
        for name in Files.list(home + "/.profile.d").sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) })
        where name.hasSuffix(".sh") {
            lines.append(". \(BuildEnvironment.shellQuoted(app + "/.profile.d/" + name))")
        }
        lines.append("if [ -f \"$HOME/.profile\" ]; then . \"$HOME/.profile\"; fi")
        lines.append(command)
        return lines.joined(separator: "\n") + "\n"
    }
}
