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

    /// Runs the build; its failure is thrown for the caller to print. With `--json` the log goes
    /// to stderr and stdout gets one JSON object, whatever the outcome.
    public func run() throws {
        let jsonOutput = options.json ? StandardOutput.divertToStandardError() : nil
        let (summary, failure) = summarized { try perform(&$0) }
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
    /// the stages launched in a namespace, and the slug published from what they left.
    func perform(_ summary: inout LocalBuildSummary) throws {
        let context = invocation.context
        let appDir = options.appDir
        try options.validate()
        guard Files.isDirectory(appDir) else {
            throw MultipackError.usage(
                "\(appDir) is not a directory.", hint: "Give multipack the path of your app's directory.")
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

        var workspace = try LocalWorkspace(options: options, caller: caller)
        defer { workspace.close(stopped: context.stop.isRequested) }
        let launch = try SandboxLaunch(
            options: options, ci: mode == .ci, caller: caller, callerDir: callerDir, workspace: workspace,
            context: context)
        summary.stack = launch.stack
        summary.sandbox = launch.sandbox?.backend.name ?? "none"
        summary.buildDirectory = workspace.state.build
        log.step(
            "Building \(options.origin?.name ?? appDir) in \(workspace.state.build) (\(launch.buildDir) while it runs)")
        try workspace.fill(options: options, configVars: configVars, applySlugIgnore: mode == .build, context: context)
        summary.cache = options.noCache ? nil : workspace.cache
        let sourceVersion = options.origin?.sourceVersion ?? Self.sourceVersion(of: appDir, environment: caller)
        summary.sourceVersion = sourceVersion

        let (result, outcome) = try launch.run(
            workspace, entries: entries, listed: listed, sourceVersion: sourceVersion, in: context)
        summary.add(outcome?.record)
        try? Files.write("\(workspace.id) \(Self.timestamp())\n", to: workspace.state.buildID)
        // The multipack inside was killed before it could unwind: the app's hooks are put back here.
        if outcome == nil {
            _ = AppHooks(dirs: BuildDirectories(build: workspace.running.build, cache: "/", env: "/"))
                .recoverLeftovers()
        }
        workspace.finish()
        guard let outcome, result.termination.succeeded else {
            summary.failure = outcome?.failure
            // The multipack inside had no time to say where it stopped (it always says it otherwise).
            if outcome == nil, let signal = context.stop.signal {
                throw MultipackError.interrupted(
                    signal, "while the buildpacks ran (stopped before they could say where)")
            }
            if outcome == nil, !result.termination.succeeded {
                throw MultipackError.build(
                    "The build's namespace could not be set up or ended early (\(result.termination)).",
                    details: launch.sandbox.map { ["namespace: \($0.backend)"] } ?? [],
                    hint: "The message above says why; set MULTIPACK_SANDBOX=off to build without namespaces.")
            }
            throw MultipackError.printedBefore(exitCode: outcome?.code ?? result.termination.exitCode, headline: nil)
        }
        // Stopped once the stages were done: the build did not finish, as a compile says at its end.
        try context.stop.check()
        let publish = SlugPublish(options: options, caller: caller)
        if mode == .ci {
            if options.slugPath != nil { try publish.writeSlug(workspace.state.build, &summary, log: log) }
            return
        }
        try publish.run(outcome, workspace: workspace, configVars: configVars, summary: &summary, in: context)
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
