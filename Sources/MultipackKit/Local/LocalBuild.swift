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
    /// `--pass-env NAME`: the caller's variables handed to the buildpacks' process environment.
    public var passEnv: [String] = []

    public init(appDir: String) {
        self.appDir = Files.absolute(appDir)
    }

    /// The stacks Heroku builds on, past and present: what `--stack` accepts.
    public static let stacks = ["heroku-18", "heroku-20", "heroku-22", "heroku-24"]

    /// Command-line values that no build could use: usage errors (exit 2) before anything runs.
    public func validate() throws(MultipackError) {
        guard Self.stacks.contains(stack) else {
            throw MultipackError.usage(
                "--stack \(Masking.text(stack)) is not a Heroku stack.",
                hint: "Give one of \(Self.stacks.joined(separator: ", ")).")
        }
        guard slugLimitMB >= 0 else {
            throw MultipackError.usage(
                "--slug-limit must be a number of MB, 0 or more.", hint: "Heroku's limit is 500.")
        }
        for name in passEnv {
            guard SimpleExport.isName(Substring(name)) else {
                throw MultipackError.usage(
                    "--pass-env takes a variable's name, but got `\(Masking.text(name))`.",
                    hint: "Write --pass-env NAME (letters, digits and _, not starting with a digit).")
            }
            guard !name.hasPrefix("MULTIPACK_"), !HerokuEnvironment.buildOwn.contains(name) else {
                throw MultipackError.usage(
                    "--pass-env \(name): \(name.hasPrefix("MULTIPACK_") ? "multipack's own settings configure multipack, never a buildpack" : "the build sets \(name) itself, as Heroku does").",
                    hint: "Give it as a config var instead (--env \(name)=VALUE): buildpacks read those from ENV_DIR.")
            }
        }
    }

    /// The caller's variables `--pass-env` names; one that is not set is a usage error.
    func passedVariables(_ caller: [String: String]) throws(MultipackError) -> [(key: String, value: String)] {
        var passed: [(key: String, value: String)] = []
        for name in passEnv {
            guard let value = caller[name] else {
                throw MultipackError.usage(
                    "--pass-env \(name) hands \(name) from your environment to the buildpacks, but \(name) is not set there.",
                    hint: "Export \(name) first (export \(name)=…), or leave --pass-env \(name) out.")
            }
            passed.upsert(name, value)
        }
        return passed
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

    /// Runs the build; its failure is thrown for the caller to print. With `--json` the log goes
    /// to stderr and stdout gets one JSON object, whatever the outcome.
    public func run() throws {
        let start = ContinuousClock.now
        let jsonOutput = options.json ? StandardOutput.divertToStandardError() : nil
        var summary = LocalBuildSummary(
            command: mode == .build ? "build" : "ci", app: options.appDir, stack: options.stack)
        var failure: MultipackError?
        do {
            try perform(&summary)
        } catch {
            failure = MultipackError(error)
        }
        if let failure {
            summary.failure =
                failure.printed
                ? summary.failure ?? (failure.headline.isEmpty ? nil : failure.headline) : failure.lines.first
        }
        summary.exitCode = failure?.exitCode ?? 0
        summary.outcome = failure == nil ? "succeeded" : invocation.stop.isRequested ? "interrupted" : "failed"
        summary.seconds = start.duration(to: .now).seconds
        if let jsonOutput {
            Log.writeToDescriptor(summary.json + "\n", jsonOutput)
            close(jsonOutput)
        }
        if let failure { throw failure }
    }

    private func perform(_ summary: inout LocalBuildSummary) throws {
        let appDir = options.appDir
        try options.validate()
        guard Files.isDirectory(appDir) else {
            throw MultipackError.usage(
                "\(appDir) is not a directory.", hint: "Give multipack the path of your app's directory.")
        }
        let caller = invocation.environment
        let callerDir = Files.absolute(".")
        let passed = try options.passedVariables(caller)
        // Bad input (exit 2) is said before anything is copied or run: a .buildpacks line, an
        // app.json, an --env-file.
        let commandLine = try StagesJob.entries(options.buildpacks, directory: callerDir)
        let listed =
            Files.exists(appDir + "/.buildpacks")
            ? try BuildpackList.load(appDir + "/.buildpacks", directory: appDir) : nil
        // A build reads app.json only for its list; a broken one does not fail a build that has another.
        let appJSON =
            mode == .ci || (commandLine.isEmpty && listed == nil)
            ? try AppJSON.read(appDir + "/app.json") : try? AppJSON.read(appDir + "/app.json")
        let choice = try BuildpackChoice.choose(
            commandLine: commandLine, ci: mode == .ci, appJSON: appJSON, listed: listed, appDir: appDir)
        let testEnv = mode == .ci ? appJSON?.testEnv ?? [] : []
        let configVars = try options.configArguments.resolve(environment: caller, over: testEnv)
        // The build itself uses the app's state, not TMPDIR; what killed commands left there goes.
        ScratchDirectory.sweepTemporaryRoot()
        StackRoot.sweepPartials(caller)
        let state = LocalState.App(appDir: appDir, environment: caller, ci: mode == .ci)
        let lock = try state.begin()
        let statePath = state.path
        var removal = BackgroundWork { LocalState.App.removeReplaced(in: statePath) }
        let id = "build_" + Self.randomHex()
        // While it runs, the build directory and the cache live in the build's /tmp, so that
        // renames between them and TMPDIR stay on one mount, as on Heroku; then the cache goes
        // back, and the build directory is kept only if the build succeeds.
        let running = (build: state.work + "/tmp/" + id, cache: state.work + "/tmp/codon/tmp/cache")
        let ownCache = options.noCache || options.cacheDir != nil ? nil : running.cache
        var published = false
        defer {
            state.finish(cache: ownCache)
            if !published { log.step(state.keptDescription(appDir: appDir)) }
            // Asked to stop, multipack exits at once: the next build removes the rest.
            if !invocation.stop.isRequested { removal.wait() }
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
                throw MultipackError.usage(
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
        log.step("Building \(appDir) in \(buildDir)")
        log.detail("(kept in \(state.kept.build) if it succeeds; until then the last successful build stays as it is)")
        logChoice(choice, appJSON: appJSON, listed: listed != nil)
        if mode == .ci { logSkippedAddons(appJSON?.testAddons ?? []) }
        logPassed(passed, caller: caller)
        try Files.makeDirectory(running.build)
        try copyApp(to: running.build)
        if mode == .build { applySlugIgnore(running.build) }

        let cache = try prepareCache(state, running: running.cache)
        summary.cache = options.noCache ? nil : cache
        for (name, value) in configVars {
            try Files.write(value, to: state.next.env + "/" + name, mode: LocalState.privateFileMode)
        }

        let sourceVersion = Self.sourceVersion(of: appDir, environment: caller)
        summary.sourceVersion = sourceVersion
        var environment = HerokuEnvironment.build(stack: stack, sourceVersion: sourceVersion, caller: caller)
        for (name, value) in passed { environment[name] = value }
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

        let entriesBase = choice.source == .commandLine ? callerDir : appDir
        let job = StagesJob(
            ci: mode == .ci, entries: choice.entries, appDir: appDir, entriesBase: entriesBase, build: buildDir,
            cache: inside ? "/tmp/codon/tmp/cache" : cache == state.cache ? running.cache : cache,
            env: inside ? "/tmp/env" : state.next.env, work: workDir,
            outcome: workDir + "/outcome.json")
        var command = Command(
            Self.executablePath(), ["stages", String(decoding: try JSONEncoder().encode(job), as: UTF8.self)],
            in: inside ? "/app" : state.work + "/home", environment: environment, stdout: .inherit, stderr: .inherit)
        if var sandbox {
            let executable = workDir + "/multipack"
            sandbox.bind(Self.executablePath(), at: executable)
            command.executable = executable
            if let own = options.cacheDir { sandbox.bind(Files.absolute(own), at: job.cache, writable: true) }
            sandbox.bind(state.next.env, at: job.env)
            sandbox.bind(appDir)
            for path in StagesJob.localPaths(choice.entries, base: entriesBase) + StagesJob.localPaths(listed ?? [], base: appDir) {
                sandbox.bind(path)
            }
            if let gitConfig { sandbox.bind(gitConfig, at: workDir + "/gitconfig") }
            if let socket = caller["SSH_AUTH_SOCK"], socket.hasPrefix("/") { sandbox.bind(socket, writable: true) }
            if stackRoot != nil { sandbox.hostDirectories = Sandbox.runtimeLibraryDirectories() }
            command = sandbox.wrap(command)
        }
        command.stopsItself = true
        // A signal that came while the app was copied would reach only bubblewrap, which ignores it.
        try invocation.stop.check()
        let result = try Sandbox.run(command, stop: invocation.stop)
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
        guard let outcome, result.termination.succeeded else {
            summary.failure = outcome?.failure
            // The multipack inside had no time to say where it stopped (it always says it otherwise).
            if outcome == nil { try invocation.stop.check() }
            if outcome == nil, !result.termination.succeeded {
                throw MultipackError.build(
                    "The build's namespace could not be set up or ended early (\(result.termination)).",
                    details: sandbox.map { ["namespace: \($0.backend)"] } ?? [],
                    hint: "The message above says why; set MULTIPACK_SANDBOX=off to build without namespaces.")
            }
            throw MultipackError.printedBefore(exitCode: outcome?.code ?? result.termination.exitCode, headline: nil)
        }
        let next = state.next
        try Files.move(running.build, to: next.build)
        try Files.write("\(id) \(Self.timestamp())\n", to: next.buildID)
        if mode == .ci {
            if options.slugPath != nil { try writeSlug(from: next, release: Release(), configVars, &summary) }
        } else {
            let release = try Release.parse(outcome.release ?? "")
            let procfile = Procfile.read(next.build + "/Procfile")
            let processTypes = Procfile.processTypes(release: release, procfile: procfile)
            logProcessTypes(processTypes, procfile: procfile)
            summary.processTypes = Dictionary(processTypes.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 })
            var final = release
            final.processTypes = processTypes
            try Files.write(final.yaml, to: next.release)
            try Files.write(outcome.report ?? "", to: next.report)
            try writeSlug(from: next, release: final, configVars, &summary)
            summary.release = state.kept.release
            summary.report = state.kept.report
        }
        // One rename makes it the kept build: `run` and `report` see the old one or this one whole.
        try invocation.stop.check()
        try state.publish()
        published = true
        // The build it replaced goes while the log is written.
        let earlier = removal
        removal = BackgroundWork {
            earlier.wait()
            LocalState.App.removeReplaced(in: statePath)
        }
        summary.buildDirectory = state.kept.build
        if mode == .ci {
            log.step("Kept this CI run's build in \(state.kept.build) (apart from multipack build's)")
            return
        }
        log.step("Build directory: \(state.kept.build)")
        log.detail("Release (for multipack run): \(state.kept.release)")
        log.detail("Report: \(state.kept.report)")
        if let web = summary.processTypes["web"] != nil ? "web" : summary.processTypes.keys.sorted().first {
            log.detail("Try it: multipack run \(appDir) \(web)")
        }
    }

    /// Which buildpacks the build runs and why, when it is not the usual `.buildpacks`.
    private func logChoice(_ choice: BuildpackChoice, appJSON: AppJSON?, listed: Bool) {
        switch choice.source {
        case .commandLine:
            return
        case .dotBuildpacks:
            if appJSON?.buildpacks?.isEmpty == false {
                log.detail("(app.json lists buildpacks too: .buildpacks wins, as multipack runs it on Heroku)")
            }
            return
        case .testBuildpacks:
            log.step(
                "Using app.json's environments.test.buildpacks\(listed ? " (they win over .buildpacks)" : ""), as Heroku CI does:"
            )
        case .appJSON:
            log.step("Using app.json's buildpacks (the app has no .buildpacks), as Heroku does for CI and review apps:")
        }
        for entry in choice.entries { log.detail("\(entry.line). \(entry.maskedText)") }
    }

    /// Heroku CI provisions `environments.test.addons`; a local run has none to give.
    private func logSkippedAddons(_ addons: [String]) {
        for addon in addons {
            log.warning(
                "Skipped the add-on \(Masking.text(addon)) (app.json's environments.test.addons): multipack ci provisions none; "
                    + "give the test run what it needs with -e (a DATABASE_URL of your own).")
        }
    }

    /// What of the caller's environment the buildpacks get: `--pass-env`'s names (never their
    /// values: a mirror URL can hold a token), and once, that nothing else reaches them.
    private func logPassed(_ passed: [(key: String, value: String)], caller: [String: String]) {
        let network = HerokuEnvironment.networkNames.filter { caller[$0] != nil }
        let kept = network.isEmpty ? "" : " but the network settings (\(network.joined(separator: ", ")))"
        if passed.isEmpty {
            log.detail(
                "The buildpacks get Heroku's build environment: nothing of yours\(kept) (--pass-env NAME hands one over)")
        } else {
            log.step("Passing \(passed.map(\.key).joined(separator: ", ")) from your environment to the buildpacks (--pass-env)")
            log.detail("Nothing else of your environment reaches them\(kept)")
        }
    }

    /// Packs the staged build directory as the slug (in the state's staging, then where `--slug`
    /// says if it does), with its release and config vars beside it, and checks it against
    /// Heroku's limits. Nothing replaces an earlier slug unless the whole of this succeeds.
    private func writeSlug(
        from next: LocalState.Kept, release: Release, _ configVars: [(key: String, value: String)],
        _ summary: inout LocalBuildSummary
    ) throws {
        log.step("Compressing...")
        let bytes = try Slug.pack(next.build, to: next.slug)
        let limit = Int64(options.slugLimitMB) << 20
        let target = options.slugPath.map(Files.absolute) ?? LocalState.App(
            appDir: options.appDir, environment: invocation.environment, ci: mode == .ci
        ).kept.slug
        summary.slug = LocalBuildSummary.SlugInfo(path: target, bytes: bytes, limitBytes: limit)
        log.detail("Done: \(Slug.formatSize(bytes))")
        guard bytes <= limit else {
            summary.slug = nil
            throw MultipackError.build(
                "Compiled slug size: \(Slug.formatSize(bytes)) is too large (max is \(options.slugLimitMB)M).",
                hint: "Heroku would reject this build. Add what the app does not need at run time to .slugignore "
                    + "(tests, docs, build caches) or move large assets elsewhere; `tar tzvf SLUG | sort -k3 -n | tail` "
                    + "shows the biggest files. --slug-limit MB changes the limit for local builds.")
        }
        if bytes > Slug.softLimitBytes {
            log.warning(
                "Warning: Your slug size (\(Slug.formatSize(bytes))) exceeds Heroku's soft limit (300M), which may affect boot time."
            )
        }
        var written = next.slug
        if let own = options.slugPath.map(Files.absolute) {
            try Slug.place(next.slug, at: own)
            try Files.write(own, to: next.slugPath)
            written = own
        }
        try Files.write(release.yaml, to: LocalState.releaseSidecar(for: written))
        try Files.write(
            LocalState.dotenv(configVars), to: LocalState.configSidecar(for: written), mode: LocalState.privateFileMode)
        log.detail(
            "Slug: \(target) (\(bytes) bytes; Heroku warns above 300M and refuses above \(options.slugLimitMB)M)")
    }

    /// The app's files, except `.git` (Heroku builds the pushed tree, not the repository), owned
    /// by the caller whoever owns the originals.
    private func copyApp(to buildDir: String) throws {
        var skipped: [String] = []
        for name in Files.list(options.appDir) where name != ".git" {
            do {
                skipped += try Files.copyTree(options.appDir + "/" + name, to: buildDir + "/" + name)
                    .map { $0.hasPrefix("/") ? name : name + "/" + $0 }
            } catch {
                throw MultipackError.build(
                    "Could not copy the app into the build directory: \(options.appDir)/\(name)",
                    details: [MultipackError.reason(error)],
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
        log.detail("(kept between builds of this app; `multipack cache purge \(options.appDir)` empties it)")
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

enum StandardOutput {
    /// Points descriptor 1 at stderr (so this process's log and every child's output go there)
    /// and returns a close-on-exec descriptor for the real stdout, which `--json` keeps for itself.
    static func divertToStandardError() -> Int32 {
        let saved = fcntl(1, F_DUPFD_CLOEXEC, 3)
        dup2(2, 1)
        return saved
    }
}
