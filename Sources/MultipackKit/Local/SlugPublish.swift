import FoundationEssentials

/// What a successful local build leaves for `multipack run` and for the user (SPEC §12): the
/// release with its final process types, the report, and the slug with its release and config
/// vars beside it, checked against Heroku's limits. All of it is written into the state's
/// staging (`next/`) and becomes the kept build in one rename (`LocalState.App.publish`); the slug
/// goes where `--slug` says only once it passed the limits.
struct SlugPublish {
    var options: LocalBuildOptions
    var caller: [String: String]
    var ci: Bool

    func run(
        _ outcome: StagesJob.Outcome, workspace: LocalWorkspace, configVars: [(key: String, value: String)],
        summary: inout LocalBuildSummary, in context: BuildContext
    ) throws {
        let log = context.log
        let next = workspace.state.next
        let release = try Release.parse(outcome.release ?? "", stop: context.stop)
        let procfile = try Procfile.read(next.build + "/Procfile")
        let processTypes = Procfile.processTypes(release: release, procfile: procfile)
        logProcessTypes(processTypes, procfile: procfile, log: log)
        summary.processTypes = Dictionary(processTypes.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 })
        var final = release
        final.processTypes = processTypes
        try context.files.write(final.yaml, to: next.release)
        try context.files.write(outcome.report ?? "", to: next.report)
        if let root = summary.root {
            try context.files.write(String(decoding: try JSONEncoder().encode(root), as: UTF8.self), to: next.root)
        }
        try writeSlug(from: next, release: final, configVars, &summary, log: log)
        let kept = workspace.state.kept
        summary.release = kept.release
        summary.report = kept.report
    }

    /// What the log says once the build is kept.
    func logKept(_ kept: LocalState.Kept, processTypes: [String: String], log: Log) {
        log.step("Build directory: \(kept.build)")
        log.detail("Release (for multipack run): \(kept.release)")
        log.detail("Report: \(kept.report)")
        if let web = processTypes["web"] != nil ? "web" : processTypes.keys.sorted().first {
            log.detail("Try it: \(CommandName.line(["run", options.origin?.runTarget ?? options.appDir, web]))")
        }
    }

    /// Packs the staged build directory as the slug (in the staging, then where `--slug` says if
    /// it does), with its release and config vars beside it, and checks it against Heroku's
    /// limits. Nothing replaces an earlier slug unless the whole of this succeeds.
    func writeSlug(
        from next: LocalState.Kept, release: Release, _ configVars: [(key: String, value: String)],
        _ summary: inout LocalBuildSummary, log: Log
    ) throws {
        log.step("Compressing...")
        let bytes = try Slug.pack(next.build, to: next.slug)
        let limit = Int64(options.slugLimitMB) << 20
        let own = options.slugPath.map(Files.absolute)
        let target = own ?? LocalState.App(options: options, environment: caller, ci: ci).kept.slug
        log.detail("Done: \(Slug.formatSize(bytes))")
        guard bytes <= limit else {
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
        if let own {
            // What is at the path may have changed while the build ran.
            try Slug.checkTarget(own, sidecars: LocalState.sidecars(of: own))
            try Slug.place(next.slug, at: own)
            try Files.write(own, to: next.slugPath)
            written = own
        }
        try Files.write(release.yaml, to: LocalState.releaseSidecar(for: written))
        try Files.write(
            LocalState.dotenv(configVars), to: LocalState.configSidecar(for: written), mode: LocalState.privateFileMode)
        summary.slug = LocalBuildSummary.SlugInfo(path: target, bytes: bytes, limitBytes: limit)
        log.detail(
            "Slug: \(target) (\(bytes) bytes; Heroku warns above 300M and refuses above \(options.slugLimitMB)M)")
    }

    private func logProcessTypes(
        _ types: [(key: String, value: String)], procfile: [(key: String, value: String)], log: Log
    ) {
        log.step("Discovering process types")
        log.detail(
            "Procfile declares types     -> \(procfile.isEmpty ? "(none)" : procfile.map(\.key).joined(separator: ", "))"
        )
        let declared = Set(procfile.map(\.key))
        let defaults = types.filter { !declared.contains($0.key) }
        log.detail(
            "Default types for buildpack -> \(defaults.isEmpty ? "(none)" : defaults.map(\.key).joined(separator: ", "))"
        )
        for (key, value) in types { log.detail("\(key): \(value)") }
    }
}
