/// What a build will do, read before anything is fetched or run: the children (pinned by the
/// lock), the settings, the config vars and the environment the children start from.
struct BuildPlan: Sendable {
    var request: BuildRequest
    var entries: [BuildpackEntry]
    /// Whether `.buildpacks.lock` pinned them; nil for Heroku's own list in a local build.
    var lock: BuildRecord.LockState? = nil
    var settings: Settings
    var configVars: [String: String]
    /// What the children start from: multipack's own environment without GIT_DIR (SPEC §7.1),
    /// BUILDPACK_XTRACE only when on, and without multipack's own `MULTIPACK_*` (SPEC §15).
    var environment: [String: String]
    /// multipack's own fetches' environment: the children's, with multipack's own settings.
    var fetchEnvironment: [String: String]
    /// `BUILDPACK_XTRACE`: prints each command before it runs.
    var trace: @Sendable (Command) -> Void
}

extension BuildPlan {
    /// multipack's environment as the children get it and as its own fetches use it.
    static func environments(_ own: [String: String], settings: Settings) -> (
        children: [String: String], fetches: [String: String]
    ) {
        var environment = own
        environment["GIT_DIR"] = nil
        // BUILDPACK_XTRACE passes through to the children when it is on, and only then: "0" is off.
        environment["BUILDPACK_XTRACE"] = settings.xtrace ? "1" : nil
        return (HiddenVariable.removingOwn(environment), environment)
    }
}

/// Reads `.buildpacks` and `.buildpacks.lock`, the config vars and `.slugfilter` (SPEC §4, §10,
/// §13, §14): bad input fails here (exit 2), before anything is fetched or run.
struct ListStage: BuildStage {
    static let listHint = "List your buildpacks, one per line, in .buildpacks at the app's root."

    func run(_ request: BuildRequest, in context: BuildContext) throws -> BuildPlan {
        let dirs = request.dirs
        // Hooks a killed build left hidden are the app's: they go back before anything reads the app.
        for name in AppHooks(dirs: dirs).recoverLeftovers() {
            context.log.detail("Put back bin/\(name), which an interrupted earlier build had left hidden")
        }
        let configVars = ConfigVars.read(envDir: dirs.env)
        let settings = try Settings(configVars: configVars, environment: request.environment)
        let environment = BuildPlan.environments(request.environment, settings: settings)

        let listPath = dirs.build + "/.buildpacks"
        // A link that leads nowhere here (out of the app, as the build sees it) is read, and refused.
        guard context.files.exists(listPath) || Files.lexists(listPath) else {
            throw MultipackError.usage("There is no .buildpacks file in the app.", hint: Self.listHint)
        }
        let entries = try BuildpackList.load(listPath, directory: request.appDir)
        guard !entries.isEmpty else {
            throw MultipackError.usage(".buildpacks lists no buildpack.", hint: Self.listHint)
        }
        // A bad .slugfilter fails now, before anything is fetched or run.
        _ = try SlugFilter.read(dirs.build)

        let lock = try LockFile.load(appDir: dirs.build, directory: request.appDir)
        let pinned = try lock?.pinning(entries) ?? entries
        let floating = pinned.filter(\.isFloating).count
        if let lock {
            context.log.step("Using \(LockFile.name) (\(lock.pinSummary))")
        } else if floating > 0 {
            context.log.step(
                "\(floating) of \(entries.count) buildpacks follow a moving ref (a branch, a tag or an unpinned "
                    + "archive): `\(CommandName.line(["lock"]))` pins them in \(LockFile.name)")
        }
        var plan = BuildPlan(
            request: request, entries: pinned, settings: settings, configVars: configVars,
            environment: environment.children, fetchEnvironment: environment.fetches,
            trace: context.log.tracer(settings.xtrace))
        plan.lock = BuildRecord.LockState(
            used: lock != nil, pinned: pinned.filter { $0.pin != nil }.count, children: pinned.count, floating: floating
        )
        return plan
    }
}
