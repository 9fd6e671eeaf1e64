import FoundationEssentials

/// The buildpack side of a local build: compile (or test-compile), release, test, report.
protocol BuildStages {
    /// Detects and compiles; a failure is thrown (or, when a child process printed it already,
    /// thrown as a `MultipackError` that was `printed`).
    mutating func compile(testCompile: Bool) throws
    func release() throws -> Release
    func test() throws
    /// `bin/report`'s output.
    func report() -> String
    /// What compile recorded about each child.
    var record: BuildRecord? { get }
    /// The environment the tests see: the build's, with every child's exports applied.
    func testEnvironment() -> [String: String]
}

/// multipack as the app's one buildpack, over its `.buildpacks`: its own binary run as
/// `bin/detect`, `bin/compile`, `bin/release`, `bin/report` would be on Heroku, one process each.
struct SelfStages: BuildStages {
    var dirs: BuildDirectories
    var buildpackDir: String
    var appDir: String
    var environment: [String: String]
    /// Where a verb that fails writes its ` !     ` block's lines, for `--json`.
    var failureFile: String
    var context: BuildContext
    var log: Log { context.log }
    private let outerEnvironment: [String: String]

    init(
        dirs: BuildDirectories, buildpackDir: String, appDir: String, environment: [String: String],
        commandName: String? = nil, failureFile: String, context: BuildContext
    ) {
        self.context = context
        self.dirs = dirs
        self.buildpackDir = buildpackDir
        self.appDir = appDir
        self.failureFile = failureFile
        self.outerEnvironment = HiddenVariable.removingOwn(environment)
        var environment = environment
        environment[HiddenVariable.buildpackDir] = buildpackDir
        // `.buildpacks` paths are relative to the app, not to its copy.
        environment[HiddenVariable.appDir] = appDir
        environment[HiddenVariable.failureFile] = failureFile
        // The verbs run as the bin/ shims would start them (`report` is bin/report's).
        environment[ShimProtocol.variable] = ShimProtocol.spoken
        environment[HiddenVariable.commandName] = commandName
        self.environment = environment
    }

    /// A verb failed and printed its block: its exit code, and its first line for `--json`.
    private func reported(_ result: ProcessResult) -> MultipackError {
        let lines = (try? Files.read(failureFile))?.lines.map(String.init)
        return .printedBefore(exitCode: result.termination.exitCode, headline: lines?.first)
    }

    private func verb(_ arguments: [String], stdout: Command.Output, stderr: Command.Output = .inherit) throws
        -> ProcessResult
    {
        let multipack = HostLoader.relaunch(arguments)
        let command = Command(
            multipack.executable, multipack.arguments, environment: environment, stdout: stdout, stderr: stderr)
        let xtrace = (try? Settings.boolean("BUILDPACK_XTRACE", environment["BUILDPACK_XTRACE"])) == true
        let runner = context.runner(trace: log.tracer(xtrace))
        return try runner.run(command, owner: .verb(failureFile: failureFile), stage: arguments[0])
    }

    mutating func compile(testCompile: Bool) throws {
        let detect = try verb(["detect", dirs.build], stdout: .capture, stderr: .capture)
        guard detect.termination.succeeded else {
            let reason = detect.stderrText.lines.map { line -> String in
                var text = Substring(line)
                if text.hasPrefix(" !     ") { text = text.dropFirst(7) }
                return String(text)
            }.filter { !$0.isEmpty }
            throw MultipackError.build(
                "App not compatible with multipack: its detect failed.", details: reason,
                hint: "List the app's buildpacks in .buildpacks at its root, or name them with --buildpack URL.")
        }
        log.step("\(detect.stdoutText.trimmingCharacters("\n")) app detected")
        let compile = try verb(
            [testCompile ? "test-compile" : "compile", dirs.build, dirs.cache, dirs.env], stdout: .inherit)
        guard compile.termination.succeeded else { throw reported(compile) }
    }

    func release() throws -> Release {
        let result = try verb(["release", dirs.build], stdout: .capture)
        guard result.termination.succeeded else {
            throw MultipackError.build(
                "multipack's release failed with \(result.termination).", hint: "Its output above says why.")
        }
        return try Release.parse(result.stdoutText)
    }

    func test() throws {
        let result = try verb(["test", dirs.build, dirs.env], stdout: .inherit)
        guard result.termination.succeeded else { throw reported(result) }
    }

    func testEnvironment() -> [String: String] {
        var environment = outerEnvironment
        guard let record else { return environment }
        for name in record.unset { environment[name] = nil }
        environment.merge(record.exported) { $1 }
        return environment
    }

    func report() -> String {
        (try? verb(["report", dirs.build, dirs.cache, dirs.env], stdout: .capture))?.stdoutText ?? ""
    }

    var record: BuildRecord? { BuildRecord.load(BuildState(buildpackDir: buildpackDir, buildDir: dirs.build)) }
}

/// `--buildpack URL …`: Heroku's own multi-buildpack list. Each buildpack runs as a top-level one
/// (detect must pass, its `export` flows on to the later ones) and the last one's release wins.
/// The app's hooks are left to the buildpacks, as on Heroku.
struct ListStages: BuildStages {
    var entries: [BuildpackEntry]
    var dirs: BuildDirectories
    var workDir: String
    /// Relative local paths are relative to where `multipack build` was started.
    var callerDir: String
    var environment: [String: String]
    var configVars: [String: String]
    var context: BuildContext
    var log: Log { context.log }
    private var children: [ChildRun] = []
    private var finalEnvironment: [String: String] = [:]
    private(set) var record: BuildRecord? = BuildRecord()

    init(
        entries: [BuildpackEntry], dirs: BuildDirectories, workDir: String, callerDir: String,
        environment: [String: String], configVars: [String: String], context: BuildContext
    ) {
        self.context = context
        self.entries = entries
        self.dirs = dirs
        self.workDir = workDir
        self.callerDir = callerDir
        self.environment = environment
        self.configVars = configVars
    }

    mutating func compile(testCompile: Bool) throws {
        let start = context.clock.now
        record?.stage = testCompile ? "test-compile" : "compile"
        defer { record?.totalSeconds = context.seconds(since: start) }
        do {
            try run(testCompile: testCompile)
            record?.outcome = "succeeded"
        } catch {
            record?.outcome = MultipackError(error).isInterrupted ? "interrupted" : "failed"
            record?.failure = MultipackError(error).lines.first
            throw error
        }
    }

    private mutating func run(testCompile: Bool) throws {
        let settings = try Settings(configVars: configVars, environment: environment)
        // The fetches read multipack's own settings; the buildpacks never see them.
        let plan = BuildPlan(
            request: BuildRequest(dirs: dirs, appDir: callerDir, environment: environment, testCompile: testCompile),
            entries: entries, settings: settings, configVars: configVars,
            environment: HiddenVariable.removingOwn(environment), fetchEnvironment: environment,
            trace: log.tracer(settings.xtrace))
        let heading = "Fetching \(entries.count) buildpack\(entries.count == 1 ? "" : "s") (--buildpack)"
        let fetched = try FetchStage(workDir: workDir, heading: heading).run(plan, in: context)
        record?.children = fetched.map(BuildRecord.Child.init)
        let built = try ChildrenStage(plan: plan, runsHooks: false).run(fetched, in: context) { child, _ in
            record?.children[child.position - 1] = BuildRecord.Child(child)
        }
        children = built.children
        finalEnvironment = built.environment
        if settings.sizes { record?.buildDirSize = TreeWalk.measure(dirs.build) }
    }

    func release() throws -> Release {
        guard let last = children.last else { return Release() }
        if last.release == Release(), children.count > 1 {
            log.detail(
                "The last buildpack, \(last.label) \(last.displayName), has no release: no default process types.")
        }
        return last.release
    }

    func testEnvironment() -> [String: String] { finalEnvironment }

    func test() throws {
        let tests = ChildTests(
            buildDir: dirs.build, envDir: dirs.env, environment: finalEnvironment, log: log,
            runner: context.runner())
        try tests.run(children.map { ChildTests.Child(name: $0.named, directory: $0.fetched.directory) })
    }

    func report() -> String { record?.reportYAML ?? "" }
}

extension Termination {
    /// As a shell reports it: the exit code, or 128 + the signal.
    public var exitCode: Int32 {
        switch self {
        case .exited(let code): return code
        case .signaled(let signal): return 128 + signal
        }
    }
}
