/// The children of one build, in list order: fetched together, then run one after another with
/// the environment threaded through (SPEC §5, §7.2). multipack's own compile and a local build's
/// `--buildpack` list both run their buildpacks through this.
struct ChildSequence {
    var dirs: BuildDirectories
    var context: BuildContext
    var trace: @Sendable (Command) -> Void
    var log: Log { context.log }
    private(set) var children: [ChildRun] = []
    /// Charges each child with BUILD_DIR's growth during its turn.
    var sizes: SizeMeter?

    init(dirs: BuildDirectories, context: BuildContext, trace: @escaping @Sendable (Command) -> Void) {
        self.dirs = dirs
        self.context = context
        self.trace = trace
    }

    /// Fetches every entry (in parallel) and logs each one's resolved version, in list order.
    mutating func fetch(_ entries: [BuildpackEntry], context: FetchContext, heading: String) throws {
        var context = context
        context.trace = trace
        let log = self.log
        context.progress = { line in log.write(line + "\n", 1) }
        context.warn = { log.warning($0) }
        log.step(heading)
        let fetched = try Fetcher.fetchAll(entries, context: context)
        children = fetched.enumerated().map {
            ChildRun(fetched: $0.element, position: $0.offset + 1, total: fetched.count)
        }
        for child in children {
            log.detail(
                "\(child.label) \(child.url) @ \(short(child.fetched.version)) "
                    + "(\(child.fetched.source), \(formatSeconds(child.fetched.seconds)))")
            for warning in child.fetched.warnings { log.warning(warning) }
        }
    }

    /// Runs detect, compile (or test-compile), export and release of each child in turn and returns
    /// the environment their exports made. `releaseEnvironment` is what `bin/release` sees: the
    /// build's environment without the exports, as on Heroku. `beforeChild` runs before each
    /// child's detect (with the environment so far, and the meter, so that a hook it runs is
    /// charged its own growth) and `afterChild` after its release or failure: the app's hooks are
    /// hidden and put back there. `finished` sees each child when done, with the environment so far.
    mutating func run(
        environment: [String: String], releaseEnvironment: [String: String], testCompile: Bool,
        beforeChild: ([String: String], inout SizeMeter?) throws -> Void = { _, _ in }, afterChild: () -> Void = {},
        finished: (ChildRun, [String: String]) -> Void
    ) throws -> [String: String] {
        let runner = ChildRunner(dirs: dirs, context: context, trace: trace)
        var environment = environment
        for index in children.indices {
            defer { afterChild() }
            try beforeChild(environment, &sizes)
            log.step("\(children[index].label) \(children[index].url) @ \(short(children[index].fetched.version))")
            try runner.detect(&children[index], environment: environment)
            log.detail("Detected: \(children[index].displayName)")
            try runner.compile(&children[index], environment: environment, testCompile: testCompile)
            environment = try runner.applyExport(children[index], to: environment).env
            try runner.release(&children[index], environment: releaseEnvironment)
            children[index].growth = sizes?.growth()
            log.detail(
                "\(children[index].label) \(children[index].displayName) done in "
                    + formatSeconds(children[index].ownSeconds)
                    + (children[index].growth.map { " (\($0.signedBytes), \($0.signedFiles))" } ?? ""))
            finished(children[index], environment)
        }
        return environment
    }
}

extension BuildRecord.Child {
    init(_ child: ChildRun) {
        self.init(
            position: child.position, url: child.url, name: child.name, version: child.fetched.version,
            source: child.fetched.source, directory: child.fetched.directory, fetchSeconds: child.fetched.seconds,
            detectSeconds: child.detectSeconds, compileSeconds: child.compileSeconds,
            releaseSeconds: child.releaseSeconds, growth: child.growth)
    }
}
