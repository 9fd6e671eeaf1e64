import FoundationEssentials
import Glibc

/// What `multipack build` and `multipack ci` were asked to do.
public struct LocalBuildOptions: Sendable {
    public var appDir: String
    /// `--buildpack`: a Heroku-style list, each run as a top-level buildpack. Empty: multipack
    /// runs itself over the app's `.buildpacks`.
    public var buildpacks: [String] = []
    public var configArguments = ConfigVarArguments()
    public var cacheDir: String?
    public var noCache = false
    public var stack = "heroku-24"
    /// `--stack-root DIR|TARBALL`: build on that root filesystem instead of this machine's.
    public var stackRoot: String?
    public var slugPath: String?
    public var slugLimitMB = Slug.defaultLimitMB
    public var json = false

    public init(appDir: String) {
        self.appDir = Files.absolute(appDir)
    }

    /// The stacks Heroku builds on, past and present: what `--stack` accepts.
    public static let stacks = ["heroku-18", "heroku-20", "heroku-22", "heroku-24"]

    /// Command-line values that no build could use: usage errors (exit 2) before anything runs.
    public func validate() throws(UsageError) {
        guard Self.stacks.contains(stack) else {
            throw UsageError(
                "--stack \(Masking.text(stack)) is not a Heroku stack.",
                hint: "Give one of \(Self.stacks.joined(separator: ", ")).")
        }
        guard slugLimitMB >= 0 else {
            throw UsageError("--slug-limit must be a number of MB, 0 or more.", hint: "Heroku's limit is 500.")
        }
        if let slugPath {
            let path = Files.absolute(slugPath)
            try Slug.checkTarget(path, sidecars: LocalState.sidecars(of: path))
        }
    }
}

/// `multipack build APP_DIR` (Heroku's slug compiler on this machine) and `multipack ci APP_DIR`
/// (Heroku CI's test-compile and test). The app is copied into a fresh `build_<hex>` directory
/// and the buildpacks run over it as separate processes, with the environment Heroku gives a build.
public struct LocalBuild {
    public enum Mode: Sendable { case build, ci }

    public var options: LocalBuildOptions
    public var invocation: Invocation
    public var mode: Mode

    public init(options: LocalBuildOptions, invocation: Invocation, mode: Mode = .build) {
        self.options = options
        self.invocation = invocation
        self.mode = mode
    }

    var log: Log { invocation.log }

    /// Runs the build and returns its exit code. Every failure is printed here, once; with
    /// `--json` the log goes to stderr and stdout gets one JSON object, whatever the outcome.
    public func run() -> Int32 {
        let start = ContinuousClock.now
        let jsonOutput = options.json ? StandardOutput.divertToStandardError() : nil
        var summary = LocalBuildSummary(
            command: mode == .build ? "build" : "ci", app: options.appDir, stack: options.stack)
        var code: Int32 = 0
        do {
            try perform(&summary)
        } catch let reported as ReportedFailure {
            code = reported.code
            summary.failure = summary.failure ?? reported.failure
        } catch let script as ScriptFailure {
            log.failure(script.failure)
            code = script.code
            summary.failure = script.failure.headline
        } catch {
            log.failure(error)
            code = ErrorReport.exitCode(for: error)
            summary.failure = ErrorReport.lines(for: error).first
        }
        code = SignalForwarding.exitCode(otherwise: code)
        summary.exitCode = code
        summary.outcome = code == 0 ? "succeeded" : SignalForwarding.stopSignal != nil ? "interrupted" : "failed"
        summary.seconds = start.duration(to: .now).seconds
        if let jsonOutput {
            Log.writeToDescriptor(summary.json + "\n", jsonOutput)
            close(jsonOutput)
        }
        return code
    }

    private func perform(_ summary: inout LocalBuildSummary) throws {
        let appDir = options.appDir
        try options.validate()
        guard Files.isDirectory(appDir) else {
            throw UsageError("\(appDir) is not a directory.", hint: "Give multipack the path of your app's directory.")
        }
        let caller = invocation.environment
        let callerDir = Files.absolute(".")
        let configVars = try options.configArguments.resolve(environment: caller)
        let entries = try StagesJob.entries(options.buildpacks, directory: callerDir)
        // A bad .buildpacks line is bad input (exit 2), said before anything is copied or run.
        var listed: [BuildpackEntry] = []
        if entries.isEmpty, Files.exists(appDir + "/.buildpacks") {
            listed = try BuildpackList.load(appDir + "/.buildpacks", directory: appDir)
        }
        if mode == .ci { _ = try AppJSON.read(appDir + "/app.json") }
        // The build itself uses the app's state, not TMPDIR; what killed commands left there goes.
        ScratchDirectory.sweepTemporaryRoot()
        StackRoot.sweepPartials(caller)
        let state = LocalState.App(appDir: appDir, environment: caller)
        let lock = try state.begin()
        let statePath = state.path
        let removal = BackgroundWork { LocalState.App.removeReplaced(in: statePath) }
        let id = "build_" + Self.randomHex()
        // While it runs, the build directory and the cache live in the build's /tmp, so that
        // renames between them and TMPDIR stay on one mount, as on Heroku; then they go back.
        let running = (build: state.work + "/tmp/" + id, cache: state.work + "/tmp/codon/tmp/cache")
        defer {
            state.finish(build: running.build, cache: options.noCache || options.cacheDir != nil ? nil : running.cache)
            // Asked to stop, multipack exits at once: the next build removes the rest.
            if SignalForwarding.stopSignal == nil { removal.wait() }
            close(lock)
        }
        let stackRoot = try options.stackRoot.map { try StackRoot.prepare($0, caller: caller, log: log) }
        let stack = stackRoot?.stack ?? options.stack
        summary.stack = stack

        let sandbox: Sandbox?
        switch Sandbox.backend(caller) {
        case .success(let backend):
            sandbox = Sandbox(
                backend: backend, root: stackRoot?.directory ?? "/", tmp: state.work + "/tmp",
                app: state.work + "/home")
            summary.sandbox = backend.name
        case .failure(let unavailable):
            if stackRoot != nil {
                throw UsageError(
                    "--stack-root needs a user namespace, and this machine gives none: \(unavailable.reason).",
                    hint:
                        "Install bubblewrap (apt-get install bubblewrap) and allow user namespaces, or build without --stack-root."
                )
            }
            sandbox = nil
            summary.sandbox = "none"
            log.warning(
                "No namespaces here (\(unavailable.reason)): the build runs on this machine as you, with HOME=\(state.work)/home "
                    + "instead of /app, BUILD_DIR \(running.build) instead of /tmp/\(id), and /app does not exist.")
        }
        // Inside, the directories are where Heroku has them; on the host they are in the app's state.
        let inside = sandbox != nil
        let buildDir = inside ? "/tmp/" + id : running.build
        let workDir = inside ? "/tmp/multipack" : state.work + "/tmp/multipack"
        summary.buildDirectory = state.build
        log.step("Building \(appDir) in \(state.build) (\(buildDir) while it runs)")
        try Files.makeDirectory(running.build)
        try copyApp(to: running.build)
        if mode == .build { applySlugIgnore(running.build) }

        let cache = try prepareCache(state, running: running.cache)
        summary.cache = options.noCache ? nil : cache
        for (name, value) in configVars { try Files.write(value, to: state.env + "/" + name) }

        let sourceVersion = Self.sourceVersion(of: appDir, environment: caller)
        summary.sourceVersion = sourceVersion
        var environment = HerokuEnvironment.build(stack: stack, sourceVersion: sourceVersion, caller: caller)
        if mode == .ci {
            environment["CI"] = "true"
            environment["HEROKU_TEST_RUN_ID"] = UUID().uuidString.lowercased()
            if let sourceVersion { environment["HEROKU_TEST_RUN_COMMIT_VERSION"] = sourceVersion }
        }
        let gitConfig = HerokuEnvironment.gitConfig(caller)
        if !inside {
            environment["HOME"] = state.work + "/home"
            environment["TMPDIR"] = state.work + "/tmp"
        }
        environment["GIT_CONFIG_GLOBAL"] = inside ? gitConfig.map { _ in workDir + "/gitconfig" } : gitConfig
        // Inside, the binary has another path: hints name it as the user started it.
        environment[HiddenVariable.commandName] = CommandName.current

        let job = StagesJob(
            ci: mode == .ci, buildpacks: options.buildpacks, appDir: appDir, callerDir: callerDir, build: buildDir,
            cache: inside ? "/tmp/codon/tmp/cache" : cache == state.cache ? running.cache : cache,
            env: inside ? "/tmp/env" : state.env, work: workDir,
            outcome: workDir + "/outcome.json")
        var command = Command(
            Self.executablePath(), ["stages", String(decoding: try JSONEncoder().encode(job), as: UTF8.self)],
            in: inside ? "/app" : state.work + "/home", environment: environment, stdout: .inherit, stderr: .inherit)
        if var sandbox {
            let executable = workDir + "/multipack"
            sandbox.bind(Self.executablePath(), at: executable)
            command.executable = executable
            if let own = options.cacheDir { sandbox.bind(Files.absolute(own), at: job.cache, writable: true) }
            sandbox.bind(state.env, at: job.env)
            sandbox.bind(appDir)
            for path in StagesJob.localPaths(entries, base: callerDir) + StagesJob.localPaths(listed, base: appDir) {
                sandbox.bind(path)
            }
            if let gitConfig { sandbox.bind(gitConfig, at: workDir + "/gitconfig") }
            if let socket = caller["SSH_AUTH_SOCK"], socket.hasPrefix("/") { sandbox.bind(socket, writable: true) }
            if stackRoot != nil { sandbox.hostDirectories = Sandbox.runtimeLibraryDirectories() }
            command = sandbox.wrap(command)
        }
        command.stopsItself = true
        // A signal that came while the app was copied would reach only bubblewrap, which ignores it.
        if SignalForwarding.stopSignal != nil { throw Interrupted() }
        let result = try Sandbox.run(command)
        let outcomePath = (inside ? state.work + "/tmp/multipack" : workDir) + "/outcome.json"
        let outcome = (try? Files.read(outcomePath)).flatMap {
            try? JSONDecoder().decode(StagesJob.Outcome.self, from: Data($0.utf8))
        }
        let record = outcome?.record
        summary.children = record?.children.map(LocalBuildSummary.Child.init) ?? []
        summary.hookSeconds = record?.hookSeconds ?? [:]
        summary.hookGrowth = record?.hookGrowth ?? [:]
        summary.buildDirSize = record?.buildDirSize
        summary.slugfilterRemoved = record?.slugFilterRemoved
        summary.lock = record?.lock
        try? Files.write("\(id) \(Self.timestamp())\n", to: state.buildID)
        // The multipack inside was killed before it could unwind: the app's hooks are put back here.
        if outcome == nil {
            _ = AppHooks(dirs: BuildDirectories(build: running.build, cache: "/", env: "/")).recoverLeftovers()
        }
        state.finish(build: running.build, cache: options.noCache || options.cacheDir != nil ? nil : running.cache)
        guard let outcome, result.termination.succeeded else {
            summary.failure = outcome?.failure
            // The multipack inside had no time to say where it stopped (it always says it otherwise).
            if outcome == nil, SignalForwarding.stopSignal != nil {
                throw Interrupted(stage: "while the buildpacks ran (stopped before they could say where)")
            }
            if outcome == nil, !result.termination.succeeded {
                throw BuildFailure(
                    "The build's namespace could not be set up or ended early (\(result.termination)).",
                    details: sandbox.map { ["namespace: \($0.backend)"] } ?? [],
                    hint: "The message above says why; set MULTIPACK_SANDBOX=off to build without namespaces.")
            }
            throw ReportedFailure(code: outcome?.code ?? result.termination.exitCode)
        }
        if mode == .ci {
            if options.slugPath != nil { try writeSlug(state.build, &summary) }
            return
        }

        let release = try Release.parse(outcome.release ?? "")
        let procfile = Procfile.read(state.build + "/Procfile")
        let processTypes = Procfile.processTypes(release: release, procfile: procfile)
        logProcessTypes(processTypes, procfile: procfile)
        summary.processTypes = Dictionary(processTypes.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 })
        var final = release
        final.processTypes = processTypes
        try Files.write(final.yaml, to: state.release)
        summary.release = state.release
        try Files.write(outcome.report ?? "", to: state.report)
        summary.report = state.report

        let slugPath = try writeSlug(state.build, &summary)
        try Files.write(final.yaml, to: LocalState.releaseSidecar(for: slugPath))
        try Files.write(LocalState.dotenv(configVars), to: LocalState.configSidecar(for: slugPath), mode: 0o600)
        log.step("Build directory: \(state.build)")
        log.detail("Release (for multipack run): \(state.release)")
        log.detail("Report: \(state.report)")
        if let web = processTypes.first(where: { $0.key == "web" }) ?? processTypes.first {
            log.detail("Try it: \(CommandName.line(["run", appDir, web.key]))")
        }
    }

    /// Packs BUILD_DIR as the slug (in the app's state directory unless `--slug` says where) and
    /// checks it against Heroku's limits.
    @discardableResult
    private func writeSlug(_ buildDir: String, _ summary: inout LocalBuildSummary) throws -> String {
        log.step("Compressing...")
        let slugPath =
            options.slugPath.map(Files.absolute)
            ?? LocalState.App(appDir: options.appDir, environment: invocation.environment).slug
        // What is at the path may have changed while the build ran.
        try Slug.checkTarget(slugPath, sidecars: LocalState.sidecars(of: slugPath))
        for sidecar in LocalState.sidecars(of: slugPath) { Files.remove(sidecar) }
        let bytes = try Slug.pack(buildDir, to: slugPath)
        let limit = Int64(options.slugLimitMB) << 20
        summary.slug = LocalBuildSummary.SlugInfo(path: slugPath, bytes: bytes, limitBytes: limit)
        log.detail("Done: \(Slug.formatSize(bytes))")
        log.detail(
            "Slug: \(slugPath) (\(bytes) bytes; Heroku warns above 300M and refuses above \(options.slugLimitMB)M)")
        if bytes > limit {
            throw BuildFailure(
                "Compiled slug size: \(Slug.formatSize(bytes)) is too large (max is \(options.slugLimitMB)M).",
                details: ["Slug: \(slugPath)"],
                hint: "Heroku would reject this build. Add what the app does not need at run time to .slugignore "
                    + "(tests, docs, build caches) or move large assets elsewhere; `tar tzvf \(slugPath) | sort -k3 -n | tail` "
                    + "shows the biggest files. --slug-limit MB changes the limit for local builds.")
        }
        if bytes > Slug.softLimitBytes {
            log.warning(
                "Warning: Your slug size (\(Slug.formatSize(bytes))) exceeds Heroku's soft limit (300M), which may affect boot time."
            )
        }
        return slugPath
    }

    /// The app's files, except `.git` (Heroku builds the pushed tree, not the repository), owned
    /// by the caller whoever owns the originals.
    private func copyApp(to buildDir: String) throws {
        var skipped: [String] = []
        for name in Files.list(options.appDir) where name != ".git" {
            do {
                skipped += try Files.copyTree(options.appDir + "/" + name, to: buildDir + "/" + name)
                    .map { $0.hasPrefix("/") ? name : name + "/" + $0 }
            } catch is Interrupted {
                throw Interrupted(stage: "while the app was copied into the build directory")
            } catch {
                throw BuildFailure(
                    "Could not copy the app into the build directory: \(options.appDir)/\(name)",
                    details: [ErrorReport.reason(error)],
                    hint: "Check that every file in the app is readable and that \(buildDir) has room.")
            }
        }
        // Sockets and FIFOs are not files a slug can hold; opening a FIFO would block the build.
        for path in skipped.prefix(20) {
            log.detail("Skipped \(path): a socket, FIFO or device is not copied into the build.")
        }
        if skipped.count > 20 { log.detail("Skipped \(skipped.count - 20) more sockets, FIFOs or devices.") }
    }

    private func applySlugIgnore(_ buildDir: String) {
        guard let text = try? Files.read(buildDir + "/.slugignore") else { return }
        let removed = SlugIgnore(text).apply(to: buildDir)
        log.step("Deleting \(removed.count) file\(removed.count == 1 ? "" : "s") matching .slugignore patterns.")
        for path in removed.prefix(20) { log.detail("- \(path)") }
        if removed.count > 20 { log.detail("(and \(removed.count - 20) more)") }
    }

    /// The cache's directory outside the build; the app's own cache is moved to `running` for
    /// the build's time, a throwaway one is made there.
    private func prepareCache(_ state: LocalState.App, running: String) throws -> String {
        if options.noCache {
            let cache = running
            try Files.makeDirectory(cache)
            log.step("Using a throwaway cache (--no-cache): every buildpack starts cold")
            return cache
        }
        if let dir = options.cacheDir {
            let cache = Files.absolute(dir)
            try Files.makeDirectory(cache)
            log.step("Using the cache in \(cache) (--cache)")
            return cache
        }
        try Files.makeDirectory(state.cache)
        try Files.makeDirectory(String(running[..<running.lastIndex(of: "/")!]))
        try Files.move(state.cache, to: running)
        log.step("Using the cache in \(state.cache)")
        log.detail(
            "(kept between builds of this app; `\(CommandName.line(["cache", "purge", options.appDir]))` empties it)")
        return state.cache
    }

    /// The commit of the app's git HEAD, when the app is in a repository.
    static func sourceVersion(of appDir: String, environment: [String: String]) -> String? {
        var env = environment
        env["GIT_DIR"] = nil
        env["GIT_WORK_TREE"] = nil
        guard
            let result = try? Spawner.run(
                Command("git", ["rev-parse", "--verify", "-q", "HEAD"], in: appDir, environment: env)),
            result.termination.succeeded
        else { return nil }
        let commit = result.stdoutText.trimmingCharacters("\n")
        return commit.isEmpty ? nil : commit
    }

    private func logProcessTypes(_ types: [(key: String, value: String)], procfile: [(key: String, value: String)]) {
        log.step("Discovering process types")
        log.detail(
            "Procfile declares types     -> \(procfile.isEmpty ? "(none)" : procfile.map(\.key).joined(separator: ", "))"
        )
        let defaults = types.filter { type in !procfile.contains { $0.key == type.key } }
        log.detail(
            "Default types for buildpack -> \(defaults.isEmpty ? "(none)" : defaults.map(\.key).joined(separator: ", "))"
        )
        for (key, value) in types { log.detail("\(key): \(value)") }
    }

    static func randomHex() -> String {
        var generator = SystemRandomNumberGenerator()
        return String(generator.next() as UInt32, radix: 16).leftPadded(to: 8)
    }

    static func timestamp() -> String {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func executablePath() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return CommandLine.arguments[0] }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// A failure whose ` !     ` block a child process already printed: only its exit code is left
/// (and, for `--json`, its first line when the child process left it).
struct ReportedFailure: Error {
    var code: Int32
    var failure: String?
}

/// An app.json script failed: the run ends with the script's own exit code.
struct ScriptFailure: Error {
    var code: Int32
    var failure: BuildFailure
}

enum StandardOutput {
    /// Points descriptor 1 at stderr (so this process's log and every child's output go there)
    /// and returns a close-on-exec descriptor for the real stdout, which `--json` keeps for itself.
    static func divertToStandardError() -> Int32 {
        let saved = fcntl(1, F_DUPFD_CLOEXEC, 3)
        dup2(2, 1)
        return saved
    }
}
