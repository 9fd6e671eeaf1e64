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
    /// `--stack-image REF`: build on that image instead of the stack's.
    public var stackImage: String?
    /// `--stack-root DIR|TARBALL`: build on that root filesystem instead of the stack's image
    /// (`/`: this machine's own system).
    public var stackRoot: String?
    public var slugPath: String?
    public var slugLimitMB = Slug.defaultLimitMB
    public var json = false
    /// `--pass-env NAME`: the caller's variables handed to the buildpacks' process environment.
    public var passEnv: [String] = []
    /// `--mount HOST:PATH[:ro]`: the caller's directories bound into the namespace.
    public var mounts: [Mount] = []
    /// A commit's build (SPEC §19): its state, the cache its repository's commits share, its
    /// SOURCE_VERSION. nil: a directory's build, as before.
    var origin: CommitOrigin?

    public init(appDir: String) {
        self.appDir = Files.absolute(appDir)
    }

    /// The stacks Heroku builds on, past and present: what `--stack` accepts.
    public static let stacks = ["heroku-18", "heroku-20", "heroku-22", "heroku-24"]

    /// The root the build is asked to stand on.
    var stackChoice: StackChoice {
        var choice = StackChoice()
        choice.stack = stack
        choice.image = stackImage
        choice.root = stackRoot
        return choice
    }

    /// Command-line values that no build could use: usage errors (exit 2) before anything runs.
    public func validate(caller: [String: String] = [:]) throws(MultipackError) {
        guard Self.stacks.contains(stack) else {
            throw MultipackError.usage(
                "--stack \(Masking.text(stack)) is not a Heroku stack.",
                hint: "Give one of \(Self.stacks.joined(separator: ", ")).")
        }
        try stackChoice.validate(caller: caller)
        if noCache, let cacheDir {
            throw MultipackError.usage(
                "--no-cache and --cache \(Masking.text(cacheDir)) both say where the cache is; give one.",
                hint: "--no-cache builds with a throwaway cache, --cache DIR with the one in DIR.")
        }
        guard slugLimitMB >= 0 else {
            throw MultipackError.usage(
                "--slug-limit must be a number of MB, 0 or more.", hint: "Heroku's limit is 500.")
        }
        if let slugPath {
            let path = Files.absolute(slugPath)
            try Slug.checkTarget(path, sidecars: LocalState.sidecars(of: path))
        }
        for name in passEnv {
            guard BuildEnvironment.isName(Substring(name)) else {
                throw MultipackError.usage(
                    "--pass-env takes a variable's name, but got `\(Masking.text(name))`.",
                    hint: "Write --pass-env NAME (letters, digits and _, not starting with a digit).")
            }
            guard !name.hasPrefix("MULTIPACK_"), !HerokuEnvironment.buildOwn.contains(name) else {
                let why =
                    name.hasPrefix("MULTIPACK_")
                    ? "multipack's own settings configure multipack, never a buildpack"
                    : "the build sets \(name) itself, as Heroku does"
                throw MultipackError.usage(
                    "--pass-env \(name): \(why).",
                    hint: "Give it as a config var instead (--env \(name)=VALUE): buildpacks read those from ENV_DIR.")
            }
        }
    }

    /// The caller's variables `--pass-env` names; one that is not set is a usage error.
    func passedVariables(_ caller: [String: String]) throws(MultipackError) -> [(key: String, value: String)] {
        var passed: [(key: String, value: String)] = []
        var index: [String: Int] = [:]
        for name in passEnv {
            guard let value = caller[name] else {
                throw MultipackError.usage(
                    "--pass-env \(name) hands \(name) from your environment to the buildpacks, but \(name) is not set there.",
                    hint: "Export \(name) first (export \(name)=…), or leave --pass-env \(name) out.")
            }
            passed.upsert(name, value, index: &index)
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
        try Self.printingSummary(json: options.json) { summarized { try perform(&$0) } }
    }

    /// Runs `build` (a build summed up by `summarized`) and throws its failure; with `json` the
    /// log goes to stderr meanwhile and stdout gets the summary, whatever the outcome.
    static func printingSummary(json: Bool, _ build: () -> (LocalBuildSummary, MultipackError?)) throws {
        let jsonOutput = json ? StandardOutput.divertToStandardError() : nil
        let (summary, failure) = build()
        if let jsonOutput {
            Log.writeToDescriptor(summary.json + "\n", jsonOutput)
            close(jsonOutput)
        }
        if let failure { throw failure }
    }

    /// Runs `body` (the build, or a commit's build around it) and sums it up, whatever the
    /// outcome: the failure comes back beside the summary.
    func summarized(_ body: (inout LocalBuildSummary) throws -> Void) -> (LocalBuildSummary, MultipackError?) {
        let start = invocation.context.clock.now
        var summary = LocalBuildSummary(
            command: mode == .build ? "build" : "ci", app: options.origin?.name ?? options.appDir, stack: options.stack)
        var failure: MultipackError?
        do {
            try body(&summary)
        } catch {
            failure = MultipackError(error)
        }
        if let failure {
            summary.failure =
                failure.printed
                ? summary.failure ?? (failure.headline.isEmpty ? nil : failure.headline) : failure.lines.first
        }
        // Stopped by signal N: 128 + N, whatever the stage made of it (SPEC §11).
        summary.exitCode = invocation.stop.signal.map { 128 + $0 } ?? failure?.exitCode ?? 0
        summary.outcome =
            summary.exitCode == 0 ? "succeeded" : invocation.stop.isRequested ? "interrupted" : "failed"
        summary.seconds = invocation.context.seconds(since: start)
        return (summary, failure)
    }

    /// The build in three parts: the workspace (the app's state, a copy of the app, the cache),
    /// the stages launched in a namespace, and the slug published from what they left. Only a
    /// build that succeeds replaces the kept one (SPEC §12).
    func perform(_ summary: inout LocalBuildSummary) throws {
        let context = invocation.context
        let appDir = options.appDir
        try options.validate(caller: invocation.environment)
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
        // `--buildpack` replaces the app's list: its .buildpacks is not read then.
        let listed =
            commandLine.isEmpty && Files.exists(appDir + "/.buildpacks")
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

        var workspace = try LocalWorkspace(options: options, caller: caller, ci: mode == .ci)
        var published = false
        defer {
            if !published {
                log.step(
                    workspace.state.keptDescription(
                        appDir: options.origin.map { "\($0.name) at \($0.sourceVersion.prefix(12))" } ?? appDir,
                        runTarget: options.origin?.runTarget, ci: mode == .ci))
            }
            workspace.close(stopped: context.stop.isRequested)
        }
        var launch = try SandboxLaunch(
            options: options, ci: mode == .ci, caller: caller, callerDir: callerDir, workspace: workspace,
            context: context)
        launch.passed = passed
        summary.stack = launch.stack
        summary.root = launch.root.record
        summary.sandbox = launch.sandbox?.backend.name ?? "none"
        log.step("Building \(options.origin?.name ?? appDir) in \(launch.buildDir)")
        log.detail(
            "(kept in \(workspace.state.kept.build) if it succeeds; until then the last successful build stays as it is)"
        )
        logChoice(choice, appJSON: appJSON, listed: listed != nil)
        if mode == .ci { logSkippedAddons(appJSON?.testAddons ?? []) }
        logPassed(passed, caller: caller)
        try workspace.fill(options: options, configVars: configVars, applySlugIgnore: mode == .build, context: context)
        summary.cache = options.noCache ? nil : workspace.cache
        let sourceVersion = options.origin?.sourceVersion ?? Self.sourceVersion(of: appDir, environment: caller)
        summary.sourceVersion = sourceVersion

        let (result, outcome) = try launch.run(
            workspace, choice: choice, listed: listed ?? [], sourceVersion: sourceVersion, in: context)
        summary.add(outcome?.record)
        workspace.finish()
        guard let outcome else {
            // The multipack inside had no time to say where it stopped (it always says it otherwise).
            if let signal = context.stop.signal {
                throw MultipackError.interrupted(
                    signal, "while the buildpacks ran (stopped before they could say where)")
            }
            if !result.termination.succeeded {
                throw MultipackError.build(
                    "The build's namespace could not be set up or ended early (\(result.termination)).",
                    details: launch.sandbox.map { ["namespace: \($0.backend)"] } ?? [],
                    hint: "The message above says why; set MULTIPACK_SANDBOX=off to build without namespaces.")
            }
            // The buildpacks share the stages' user: one can remove or block what they report.
            throw MultipackError.build(
                "The build ended without saying how it went: multipack's record of it (/tmp/multipack/outcome.json "
                    + "as the buildpacks see it) is missing or unreadable.",
                hint: "A buildpack changed /tmp/multipack, which is multipack's own: look for one that writes there.")
        }
        guard result.termination.succeeded else {
            summary.failure = outcome.failure
            throw MultipackError.printedBefore(exitCode: outcome.code, headline: nil)
        }
        // Stopped once the stages were done: the build did not finish, as a compile says at its end.
        try context.stop.check()
        let state = workspace.state
        try workspace.stage()
        try Files.write("\(workspace.id) \(Self.timestamp())\n", to: state.next.buildID)
        let publish = SlugPublish(options: options, caller: caller, ci: mode == .ci)
        if mode == .ci {
            if options.slugPath != nil {
                try publish.writeSlug(from: state.next, release: Release(), configVars, &summary, log: log)
            }
        } else {
            try publish.run(outcome, workspace: workspace, configVars: configVars, summary: &summary, in: context)
        }
        // One rename makes it the kept build: `run` and `report` see the old one or this one whole.
        try context.stop.check()
        try state.publish()
        published = true
        let statePath = state.path
        workspace.trash.add { LocalState.App.removeReplaced(in: statePath) }
        summary.buildDirectory = state.kept.build
        if mode == .ci {
            log.step("Kept this CI run's build in \(state.kept.build) (apart from multipack build's)")
        } else {
            publish.logKept(state.kept, processTypes: summary.processTypes, log: log)
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
                "Skipped the add-on \(BuildpackList.shown(addon)) (app.json's environments.test.addons): multipack ci provisions none; "
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
                "The buildpacks get Heroku's build environment: nothing of yours\(kept) (--pass-env NAME hands one over)"
            )
        } else {
            log.step(
                "Passing \(passed.map(\.key).joined(separator: ", ")) from your environment to the buildpacks (--pass-env)"
            )
            log.detail("Nothing else of your environment reaches them\(kept)")
        }
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

    /// multipack's binary: the process's own image, or the program this machine's loader runs on
    /// a stack's root (`HostLoader`).
    static func executablePath() -> String {
        let image = processImage()
        guard image.hasPrefix(HostLoader.directory + "/"), let binary = CommandLine.arguments.first else {
            return image
        }
        return binary
    }

    /// What `/proc/self/exe` names.
    static func processImage() -> String {
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
