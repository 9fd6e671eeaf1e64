/// What a successful local build leaves for `multipack run` and for the user (SPEC §12): the
/// release with its final process types, the report, and the slug with its release and config
/// vars beside it, checked against Heroku's limits.
struct SlugPublish {
    var options: LocalBuildOptions
    var caller: [String: String]

    func run(
        _ outcome: StagesJob.Outcome, workspace: LocalWorkspace, configVars: [(key: String, value: String)],
        summary: inout LocalBuildSummary, in context: BuildContext
    ) throws {
        let log = context.log
        let state = workspace.state
        let release = try Release.parse(outcome.release ?? "", stop: context.stop)
        let procfile = Procfile.read(state.build + "/Procfile")
        let processTypes = Procfile.processTypes(release: release, procfile: procfile)
        logProcessTypes(processTypes, procfile: procfile, log: log)
        summary.processTypes = Dictionary(processTypes.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 })
        var final = release
        final.processTypes = processTypes
        try context.files.write(final.yaml, to: state.release)
        summary.release = state.release
        try context.files.write(outcome.report ?? "", to: state.report)
        summary.report = state.report

        let slugPath = try writeSlug(state.build, &summary, log: log)
        try context.files.write(final.yaml, to: LocalState.releaseSidecar(for: slugPath))
        try context.files.write(LocalState.dotenv(configVars), to: LocalState.configSidecar(for: slugPath), mode: 0o600)
        log.step("Build directory: \(state.build)")
        log.detail("Release (for multipack run): \(state.release)")
        log.detail("Report: \(state.report)")
        if let web = processTypes.first(where: { $0.key == "web" }) ?? processTypes.first {
            log.detail("Try it: \(CommandName.line(["run", options.origin?.runTarget ?? options.appDir, web.key]))")
        }
    }

    /// Packs BUILD_DIR as the slug (in the app's state directory unless `--slug` says where) and
    /// checks it against Heroku's limits.
    @discardableResult
    func writeSlug(_ buildDir: String, _ summary: inout LocalBuildSummary, log: Log) throws -> String {
        log.step("Compressing...")
        let slugPath =
            options.slugPath.map(Files.absolute) ?? LocalState.App(options: options, environment: caller).slug
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
            throw MultipackError.build(
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

    private func logProcessTypes(
        _ types: [(key: String, value: String)], procfile: [(key: String, value: String)], log: Log
    ) {
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
}
