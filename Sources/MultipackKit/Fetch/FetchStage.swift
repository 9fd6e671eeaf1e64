/// Fetches every child before the first one runs (SPEC §5): in parallel, into `workDir` (a private
/// directory outside BUILD_DIR), logged in list order with each one's resolved version.
struct FetchStage: BuildStage {
    var workDir: String
    var heading: String

    func run(_ plan: BuildPlan, in context: BuildContext) throws -> [ChildRun] {
        let request = plan.request
        var fetch = FetchContext(
            appDir: request.appDir, cacheDir: request.dirs.cache, workDir: workDir, environment: plan.fetchEnvironment,
            settings: plan.settings, build: context)
        if let width = request.environment[HiddenVariable.fetchParallelism].flatMap(Int.init), width > 0 {
            fetch.parallelism = width
        }
        fetch.trace = plan.trace
        let log = context.log
        fetch.progress = { line in log.write(line + "\n", 1) }
        fetch.warn = { log.warning($0) }
        log.step(heading)
        let fetched = try Fetcher.fetchAll(plan.entries, context: fetch)
        let children = fetched.enumerated().map {
            ChildRun(fetched: $0.element, position: $0.offset + 1, total: fetched.count)
        }
        for child in children {
            log.detail(
                "\(child.label) \(child.url) @ \(short(child.fetched.version)) "
                    + "(\(child.fetched.source), \(formatSeconds(child.fetched.seconds)))")
            for warning in child.fetched.warnings { log.warning(warning) }
        }
        return children
    }
}
