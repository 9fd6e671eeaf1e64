import FoundationEssentials
import Glibc

/// `multipack run SLUG|APP_DIR [TYPE] [-- COMMAND …]`: a process type, or a one-off command, the
/// way a Heroku dyno starts it (SPEC §12, §15): the slug at `/app` in a private namespace,
/// `HOME=/app`, `PORT`, `DYNO`, the config vars the build was given and the app's `.env`, then
/// `.profile.d/*.sh` and `.profile` sourced in order. An app directory means its last build.
public struct LocalRun {
    public var target: String
    /// nil: `web`, unless a one-off command is given.
    public var process: String?
    /// `-- COMMAND …`: a one-off command instead of a process type.
    public var command: [String] = []
    /// `--env K=V` and `--env-file FILE`, read when the run starts.
    public var configArguments = ConfigVarArguments()
    public var port = 5000
    public var invocation: Invocation

    public init(target: String, process: String?, invocation: Invocation) {
        self.target = Files.absolute(target)
        self.process = process
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
    }

    /// Runs the process and returns its exit code (128 + the signal when a signal ended it).
    public func run() throws -> Int32 {
        if !command.isEmpty, process != nil {
            throw MultipackError.usage(
                "multipack run takes a process type or a one-off command after --, not both.",
                hint:
                    "\(CommandName.line(["run", target, "web"])), or \(CommandName.line(["run", target, "--", "bash"]))"
            )
        }
        ScratchDirectory.sweepTemporaryRoot()
        let scratchDirectory = try ScratchDirectory(.run)
        defer { scratchDirectory.remove() }
        let scratch = scratchDirectory.path
        let source = try resolve(scratch: scratch)

        var sandbox: Sandbox?
        switch Sandbox.backend(invocation.environment) {
        case .success(let backend):
            try Files.makeDirectory(scratch + "/tmp")
            sandbox = Sandbox(backend: backend, tmp: scratch + "/tmp", app: source.home)
        case .failure(let unavailable):
            log.warning(
                "No namespaces here (\(unavailable.reason)): the process runs on this machine as you, in \(source.home) "
                    + "with HOME=\(source.home) instead of /app.")
        }
        // Where the app is as the process sees it.
        let app = sandbox == nil ? source.home : "/app"

        let name = command.isEmpty ? (process ?? "web") : "run"
        let launch: [String]
        let shown: String
        if command.isEmpty {
            let types = Procfile.processTypes(
                release: source.release, procfile: Procfile.read(source.home + "/Procfile"))
            guard let line = types.first(where: { $0.key == name })?.value else {
                throw MultipackError.usage(
                    "There is no process type `\(name)` in \(target).",
                    hint: types.isEmpty
                        ? "It declares none: add a Procfile to the app (`web: <command>`) and build it again, or give a command: \(CommandName.line(["run", target, "--", "bash"]))"
                        : "It has: \(types.map(\.key).joined(separator: ", ")).")
            }
            launch = ["-c", Self.launchScript(home: source.home, app: app, command: line)]
            shown = line
        } else {
            launch = ["-c", Self.launchScript(home: source.home, app: app, command: "exec \"$@\""), "bash"] + command
            shown = command.joined(separator: " ")
        }
        var environment = try dynoEnvironment(name: name, source: source)
        environment["HOME"] = app
        log.step("Starting \(name): \(shown)")
        log.detail("HOME=\(environment["HOME"] ?? "") PORT=\(port) DYNO=\(environment["DYNO"] ?? "")")
        var spawned = Command(
            "bash", launch, in: app, environment: environment, stdout: .inherit,
            stderr: .inherit)
        if let sandbox { spawned = sandbox.wrap(spawned) }
        let result = try Sandbox.run(spawned, in: invocation.context)
        log.step("\(name) ended with \(result.termination)")
        return result.termination.exitCode
    }

    private func resolve(scratch: String) throws -> Source {
        if Files.isRegularFile(target) {
            let dir = scratch + "/slug"
            try Files.makeDirectory(dir)
            log.step("Extracting the slug \(target) into \(dir)")
            do {
                try extractArchive(atPath: target, into: dir, limits: Self.slugLimits, stop: invocation.stop)
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
        let state = LocalState.App(appDir: target, environment: invocation.environment)
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
            buildConfig: Self.configVars(in: state.env), dotenv: target + "/.env")
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

    static func configVars(in envDir: String) -> [(key: String, value: String)] {
        Files.list(envDir).sorted().compactMap { name in (try? Files.read(envDir + "/" + name)).map { (name, $0) } }
    }

    /// A dyno's environment: HOME, PORT, DYNO, PATH and LANG (TERM when there is one); then, each
    /// winning over the one before, the release's config vars, the build's, the app's `.env` (as
    /// `heroku local` reads it), `--env-file` and `--env`.
    func dynoEnvironment(name: String, source: Source) throws -> [String: String] {
        var env: [String: String] = [:]
        for (key, value) in source.release.configVars { env[key] = value }
        for (key, value) in source.buildConfig { env[key] = value }
        if let dotenv = source.dotenv, Files.lexists(dotenv) {
            let text: String
            do {
                text = String(decoding: try Files.readRegularFile(dotenv, limit: DotEnv.maxBytes), as: UTF8.self)
            } catch {
                throw MultipackError.usage(
                    "The app's .env: " + DotEnv.readProblem(error, file: dotenv),
                    hint: "Make .env a dotenv file (KEY=VALUE lines), as `heroku local` reads it, or remove it.")
            }
            for (key, value) in try DotEnv.parse(text, file: dotenv) { env[key] = value }
        }
        for (key, value) in try configArguments.resolve(environment: invocation.environment) { env[key] = value }
        env["HOME"] = "/app"
        env["PORT"] = String(port)
        env["DYNO"] = name + ".1"
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
