import FoundationEssentials
import Glibc

/// How multipack was started: its own directory and environment.
public struct Invocation: Sendable {
    /// multipack's buildpack directory: the merged release, the combined export and the record live here.
    public var buildpackDir: String
    /// multipack's own environment.
    public var environment: [String: String]
    public var log: Log
    /// Whether multipack was asked to stop.
    public var stop: StopToken

    public init(buildpackDir: String, environment: [String: String], log: Log = Log(), stop: StopToken = .signals) {
        self.buildpackDir = buildpackDir
        self.environment = environment
        self.log = log
        self.stop = stop
    }

    /// Relative paths in `.buildpacks` are relative to the app root. A local build compiles a copy
    /// of the app, and says where the original is.
    func appDir(for dirs: BuildDirectories) -> String {
        environment[HiddenVariable.appDir].map(Files.absolute) ?? dirs.build
    }
}

/// `bin/compile` and `bin/test-compile` (SPEC §5–§8): list → fetch → hooks and children → release.
public struct Compile {
    public var dirs: BuildDirectories
    public var invocation: Invocation
    public var testCompile = false

    public init(dirs: BuildDirectories, invocation: Invocation, testCompile: Bool = false) {
        self.dirs = dirs
        self.invocation = invocation
        self.testCompile = testCompile
    }

    var log: Log { invocation.log }

    public func run() throws {
        let start = ContinuousClock.now
        // Declared first so that they are waited for last, after the record is saved: the
        // children's directories, and the files the records and the export replace.
        var removal: BackgroundWork?
        defer { removal?.wait() }
        let trash = SerialWork()
        defer { trash.finish() }
        // What an earlier compile of this BUILD_DIR left goes first, so that a failed or killed
        // compile can never leave the previous build's release or "succeeded" record behind.
        let state = BuildState(buildpackDir: invocation.buildpackDir, buildDir: dirs.build)
        try state.clear(trash: trash)
        var record = BuildRecord()
        record.stage = testCompile ? "test-compile" : "compile"
        record.buildDir = state.buildDir
        record.pid = getpid()
        // The "running" record is written on another thread while compile reads its inputs and
        // fetches: it is on disk before the first child runs, and before any later record.
        let running = record
        let started = BackgroundWork { running.save(state, replacedGoesTo: trash) }
        var saved = false
        defer {
            if !saved {
                started.wait()
                record.totalSeconds = start.duration(to: .now).seconds
                record.save(state, replacedGoesTo: trash)
            }
        }
        do {
            try run(&record, state: state, started: started, removal: &removal, trash: trash)
            // A signal that came after the last stage still means the build did not finish.
            try invocation.stop.check("at the end of the build")
            record.outcome = "succeeded"
            record.totalSeconds = start.duration(to: .now).seconds
            // The record carries the merged release: a build whose record cannot be written has
            // not succeeded.
            try record.write(state, replacedGoesTo: trash)
            saved = true
        } catch {
            record.outcome = MultipackError(error).isInterrupted ? "interrupted" : "failed"
            record.failure = MultipackError(error).lines.first
            Files.remove(state.childrenDir)
            throw error
        }
        summary(record, seconds: record.totalSeconds)
    }

    private func run(
        _ record: inout BuildRecord, state: BuildState, started: BackgroundWork, removal: inout BackgroundWork?,
        trash: SerialWork
    ) throws {
        // Hooks a killed build left hidden are the app's: they go back before anything reads the app.
        var hooks = AppHooks(dirs: dirs)
        for name in hooks.recoverLeftovers() {
            log.detail("Put back bin/\(name), which an interrupted earlier build had left hidden")
        }

        let configVars = ConfigVars.read(envDir: dirs.env)
        let settings = try Settings(configVars: configVars, environment: invocation.environment)
        var own = invocation.environment
        own["GIT_DIR"] = nil
        // BUILDPACK_XTRACE passes through to the children when it is on, and only then: "0" is off.
        own["BUILDPACK_XTRACE"] = settings.xtrace ? "1" : nil
        // multipack's own fetches read its settings; no child or hook sees them.
        let base = HiddenVariable.removingOwn(own)
        let log = self.log
        let trace = log.tracer(settings.xtrace)

        let listPath = dirs.build + "/.buildpacks"
        guard Files.exists(listPath) else {
            throw MultipackError.usage(
                "There is no .buildpacks file in the app.",
                hint: "List your buildpacks, one per line, in .buildpacks at the app's root.")
        }
        let entries = try BuildpackList.load(listPath, directory: invocation.appDir(for: dirs))
        guard !entries.isEmpty else {
            throw MultipackError.usage(
                ".buildpacks lists no buildpack.",
                hint: "List your buildpacks, one per line, in .buildpacks at the app's root.")
        }

        // A bad .slugfilter fails now, before anything is fetched or run.
        _ = try SlugFilter.read(dirs.build)

        let lock = try LockFile.load(appDir: dirs.build, directory: invocation.appDir(for: dirs))
        let pinned = try lock?.pinning(entries) ?? entries
        // An archive's records and pins need libcrypto as soon as the fetches start: it loads on
        // the other core meanwhile. Git and directory children need no digest.
        let digests = pinned.contains(where: \.isArchive) ? BackgroundWork { prepareDigests() } : nil
        defer { digests?.wait() }
        let floating = pinned.filter(\.isFloating).count
        record.lock = BuildRecord.LockState(
            used: lock != nil, pinned: pinned.filter { $0.pin != nil }.count, children: pinned.count,
            floating: floating)
        if let lock {
            log.step("Using \(LockFile.name) (\(lock.pinSummary))")
        } else if floating > 0 {
            log.step(
                "\(floating) of \(entries.count) buildpacks follow a moving ref (a branch, a tag or an unpinned "
                    + "archive): `multipack lock` pins them in \(LockFile.name)")
        }

        // Fetch every child first, in parallel, into a private directory outside BUILD_DIR. It is
        // removed whatever the outcome; test-compile's children stay in the state for `bin/test`.
        // What killed builds left in TMPDIR goes on another thread while the children run (listing
        // a crowded TMPDIR takes milliseconds, nothing of this build depends on it, and the fetch's
        // copies keep both cores busy), or at the end of a build that fails before they run.
        var sweep: BackgroundWork?
        defer { if let sweep { sweep.wait() } else { ScratchDirectory.sweepTemporaryRoot() } }
        let scratch = testCompile ? nil : try ScratchDirectory(.children)
        let childDirectories = scratch.map(ChildDirectories.init)
        defer { if removal == nil { childDirectories?.removeAll().wait() } }
        let workDir = scratch?.path ?? state.childrenDir
        try Files.makeDirectory(workDir)
        var fetchContext = FetchContext(
            appDir: invocation.appDir(for: dirs), cacheDir: dirs.cache, workDir: workDir, environment: own,
            settings: settings)
        fetchContext.stop = invocation.stop
        if let width = invocation.environment[HiddenVariable.fetchParallelism].flatMap(Int.init), width > 0 {
            fetchContext.parallelism = width
        }
        var sequence = ChildSequence(dirs: dirs, log: log, trace: trace, stop: invocation.stop)
        try sequence.fetch(
            pinned, context: fetchContext,
            heading: "Fetching \(entries.count) buildpack\(entries.count == 1 ? "" : "s")")
        record.children = sequence.children.map(BuildRecord.Child.init)
        sweep = BackgroundWork { ScratchDirectory.sweepTemporaryRoot() }

        // The app's hooks run in place; each child runs with them hidden (SPEC §7.4).
        let managed = settings.hooks == .multipack
        func runHook(_ name: String, _ environment: [String: String], _ sizes: inout SizeMeter?) throws {
            let env = AppHooks.environment(base: environment, dirs: dirs, configVars: configVars)
            record.hookSeconds[name, default: 0] += try hooks.run(
                name, environment: env, log: log, runner: StageRunner(stop: invocation.stop, trace: trace))
            if let growth = sizes?.growth() { record.hookGrowth[name, default: TreeSize()] += growth }
        }
        sequence.sizes = SizeMeter(root: dirs.build, enabled: settings.sizes)
        started.wait()
        let environment = try sequence.run(
            environment: base, releaseEnvironment: base, testCompile: testCompile,
            beforeChild: { environment, sizes in
                guard managed else { return }
                if hooks.preCompilePending && hooks.present("pre_compile") {
                    try runHook("pre_compile", environment, &sizes)
                }
                try hooks.hide()
            },
            afterChild: { if managed { hooks.restore() } },
            finished: { child, environment in
                record.children[child.position - 1] = BuildRecord.Child(child)
                childDirectories?.childFinished(child.fetched.directory, environment: environment)
            })
        var sizes = sequence.sizes
        let children = sequence.children
        if managed {
            // A pre_compile the last child brought in still runs once, before post_compile.
            if hooks.preCompilePending && hooks.present("pre_compile") {
                try runHook("pre_compile", environment, &sizes)
            }
            if hooks.present("post_compile") { try runHook("post_compile", environment, &sizes) }
        }
        // Nothing runs from the children's directories any more: what is left of them is removed,
        // and the combined export written, on other threads while the slug is trimmed and
        // measured and the releases merged.
        removal = childDirectories?.removeAll()
        let script = BuildEnvironment.exportScript(base: base, final: environment)
        let exportPath = invocation.buildpackDir + "/export"
        let export = BackgroundWork { try Files.write(script, to: exportPath, replacedGoesTo: trash) }
        defer { export.wait() }
        if let filter = try SlugFilter.read(dirs.build) {
            let removed = try trim(with: filter, &record)
            record.slugFilterRemoved = removed
        }
        if settings.sizes, var sizes {
            record.buildDirSize = sizes.measure()
            record.sizesSeconds = sizes.seconds
        }

        let (release, provenance) = mergeReleases(
            children.map { ($0.position, $0.release) }, mode: settings.release, stop: invocation.stop)
        try invocation.stop.check("while the releases were being merged")
        record.release = release.yaml
        logRelease(release, provenance, children: children, mode: settings.release)
        try export.result()
        record.exported = environment.filter { base[$0.key] != $0.value }
        record.unset = base.keys.filter { environment[$0] == nil }.sorted()
    }

    /// Applies `.slugfilter` and says what went, the biggest first.
    private func trim(with filter: SlugFilter, _ record: inout BuildRecord) throws -> TreeSize {
        log.step("Trimming the slug with .slugfilter")
        for number in filter.trailingBlankLines {
            log.warning(".slugfilter line \(number): the pattern ends in a blank, which is part of it (as in rsync).")
        }
        let start = ContinuousClock.now
        let outcome = try filter.apply(to: dirs.build)
        record.slugFilterSeconds = start.duration(to: .now).seconds
        for path in outcome.unreadable {
            log.warning(".slugfilter: \(path) cannot be read, so it was kept whole without looking inside.")
        }
        guard !outcome.removed.isEmpty else {
            log.detail("Nothing matched a `-` rule: nothing removed")
            return outcome.total
        }
        log.detail(
            "Removed \(outcome.total.files) file\(outcome.total.files == 1 ? "" : "s") (\(TreeSize.format(outcome.total.bytes))) in "
                + "\(formatSeconds(record.slugFilterSeconds ?? 0)):"
        )
        let biggest = outcome.removed.sorted { $0.size.bytes > $1.size.bytes }
        for (path, size) in biggest.prefix(20) {
            log.detail("- \(path)  \(path.hasSuffix("/") ? size.description : TreeSize.format(size.bytes))")
        }
        if biggest.count > 20 { log.detail("(and \(biggest.count - 20) more)") }
        return outcome.total
    }

    private func logRelease(
        _ release: Release, _ provenance: ReleaseProvenance, children: [ChildRun], mode: ReleaseMode
    ) {
        let withRelease = children.filter { $0.release != Release() }.count
        log.step(
            mode == .last
                ? "Release: the last buildpack's only (MULTIPACK_RELEASE=last)"
                : "Release merged from \(withRelease) of \(children.count) buildpacks")
        for (type, _) in release.processTypes {
            let from = provenance.processTypes[type].map { children[$0 - 1] }
            log.detail("process type \(type) from \(from.map { "\($0.label) \($0.displayName)" } ?? "?")")
        }
        for (name, _) in release.configVars {
            let from = provenance.configVars[name].map { children[$0 - 1] }
            log.detail("config var \(name) from \(from.map { "\($0.label) \($0.displayName)" } ?? "?")")
        }
        if !release.addons.isEmpty { log.detail("addons: \(release.addons.joined(separator: ", "))") }
    }

    private func summary(_ record: BuildRecord, seconds: Double) {
        log.step("Summary")
        // One row per child and hook: label, time, BUILD_DIR's growth (`+84.1 MB`, when measured), more.
        var rows: [(label: String, seconds: Double?, growth: TreeSize?, tail: String)] = []
        for child in record.children {
            let time = child.fetchSeconds + child.detectSeconds + child.compileSeconds + child.releaseSeconds
            rows.append(("[\(child.position)/\(record.children.count)] \(child.name)", time, child.growth, child.url))
        }
        for name in AppHooks.names {
            guard let time = record.hookSeconds[name] else { continue }
            rows.append(("bin/\(name)", time, record.hookGrowth[name], ""))
        }
        if let removed = record.slugFilterRemoved { rows.append((".slugfilter", nil, TreeSize() - removed, "")) }
        rows.append(("total", seconds, nil, record.buildDirSize.map { "BUILD_DIR \($0.description)" } ?? ""))
        let width = min(40, rows.map(\.label.count).max() ?? 0)
        let measured = rows.contains { $0.growth != nil }
        for row in rows {
            var line =
                row.label.padding(to: width) + "  "
                + (row.seconds.map(formatSeconds) ?? "").leftPadded(to: 7, with: " ")
            if measured { line += "  " + (row.growth?.signedBytes ?? "").leftPadded(to: 10, with: " ") }
            if !row.tail.isEmpty { line += "  " + row.tail }
            log.detail(line)
        }
    }
}

func short(_ version: String) -> String {
    if version.hasPrefix("sha256:") { return String(version.prefix(19)) }
    return version.count == 40 && version.allSatisfy(\.isHexDigit) ? String(version.prefix(12)) : version
}

extension String {
    func padding(to width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
