/// Runs the children one after another (SPEC §7.2): each one's detect, compile (or
/// test-compile), export and release, the environment threaded through, and around them the app's
/// hooks (SPEC §7.4) when multipack runs them: `pre_compile` before the first child (or before
/// the next one, for a `pre_compile` a child brought in), `post_compile` after the last, each
/// child running with them hidden. BUILD_DIR's growth is charged to each child and hook (SPEC §14).
struct ChildrenStage: BuildStage {
    struct Output {
        var children: [ChildRun]
        /// The environment the exports made, for the combined export and `bin/test`.
        var environment: [String: String]
        var hookSeconds: [String: Double] = [:]
        var hookGrowth: [String: TreeSize] = [:]
        /// The meter, where the slug's stage measures BUILD_DIR last.
        var sizes: SizeMeter?
    }

    var plan: BuildPlan
    /// Whether multipack runs the app's hooks; false leaves them to the children
    /// (`MULTIPACK_HOOKS=children`, or Heroku's own list in a local build).
    var runsHooks: Bool

    private var dirs: BuildDirectories { plan.request.dirs }

    func run(_ fetched: [ChildRun], in context: BuildContext) throws -> Output {
        try run(fetched, in: context) { _, _ in }
    }

    /// As `run`; `childFinished` sees each child once its release is done, with the environment so
    /// far: the build's record keeps it, so that a failed build's report still shows what ran.
    func run(
        _ fetched: [ChildRun], in context: BuildContext, childFinished: (ChildRun, [String: String]) -> Void
    ) throws -> Output {
        let runner = ChildRunner(dirs: dirs, context: context, trace: plan.trace)
        var output = Output(children: fetched, environment: plan.environment)
        output.sizes = SizeMeter(root: dirs.build, enabled: plan.settings.sizes, clock: context.clock)
        var hooks = AppHooks(dirs: dirs)
        func runHook(_ name: String) throws {
            let environment = AppHooks.environment(base: output.environment, dirs: dirs, configVars: plan.configVars)
            output.hookSeconds[name, default: 0] += try hooks.run(
                name, environment: environment, log: context.log, runner: context.runner(trace: plan.trace))
            if let growth = output.sizes?.growth() { output.hookGrowth[name, default: TreeSize()] += growth }
        }
        for index in output.children.indices {
            defer { if runsHooks { hooks.restore() } }
            if runsHooks {
                if hooks.preCompileDue { try runHook("pre_compile") }
                try hooks.hide()
            }
            var child = output.children[index]
            context.log.step("\(child.label) \(child.url) @ \(short(child.fetched.version))")
            try runner.detect(&child, environment: output.environment)
            context.log.detail("Detected: \(child.displayName)")
            try runner.compile(&child, environment: output.environment, testCompile: plan.request.testCompile)
            output.environment = try runner.applyExport(child, to: output.environment).env
            // bin/release sees the build's environment without the exports, as on Heroku.
            try runner.release(&child, environment: plan.environment)
            child.growth = output.sizes?.growth()
            context.log.detail(
                "\(child.label) \(child.displayName) done in \(formatSeconds(child.ownSeconds))"
                    + (child.growth.map { " (\($0.signedBytes), \($0.signedFiles))" } ?? ""))
            output.children[index] = child
            childFinished(child, output.environment)
        }
        if runsHooks {
            // A pre_compile the last child brought in still runs once, before post_compile.
            if hooks.preCompileDue { try runHook("pre_compile") }
            if hooks.present("post_compile") { try runHook("post_compile") }
        }
        return output
    }
}
