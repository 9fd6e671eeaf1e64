/// The end of a compile (SPEC §7.5, §7.6, §9): the combined export, then the record that makes it
/// a success (with the merged release `bin/release` prints), then the summary table.
struct RecordStage: BuildStage {
    var state: BuildState
    /// multipack's own directory, where the combined export goes.
    var buildpackDir: String
    /// Where the files this replaces go to be removed, off the build's path.
    var trash: SerialWork

    func run(_ record: BuildRecord, in context: BuildContext) throws {
        let script = BuildEnvironment.exportScript(exported: record.exported, unset: record.unset)
        try context.files.write(script, to: buildpackDir + "/export", mode: 0o644, replacedGoesTo: trash)
        // The record carries the merged release: a build whose record cannot be written has not succeeded.
        try record.write(state, replacedGoesTo: trash)
        summary(record, log: context.log)
    }

    /// One row per child and hook: label, time, BUILD_DIR's growth (`+84.1 MB`, when measured), more.
    private func summary(_ record: BuildRecord, log: Log) {
        log.step("Summary")
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
        rows.append(
            ("total", record.totalSeconds, nil, record.buildDirSize.map { "BUILD_DIR \($0.description)" } ?? ""))
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

extension BuildRecord {
    /// A compile's record as it starts: running, written by this process (a killed one says so).
    init(running request: BuildRequest, buildDir: String, pid: Int32) {
        self.init()
        stage = request.testCompile ? "test-compile" : "compile"
        self.buildDir = buildDir
        self.pid = pid
    }

    /// What the stages made of the build, once every one of them succeeded.
    mutating func succeeded(
        _ built: ChildrenStage.Output, _ slug: SlugOutcome, _ release: Release, base: [String: String],
        seconds: Double
    ) {
        outcome = "succeeded"
        children = built.children.map(Child.init)
        hookSeconds = built.hookSeconds
        hookGrowth = built.hookGrowth
        slugFilterRemoved = slug.filterRemoved
        slugFilterSeconds = slug.filterSeconds
        buildDirSize = slug.size
        sizesSeconds = slug.sizesSeconds
        self.release = release.yaml
        exported = built.environment.filter { base[$0.key] != $0.value }
        unset = base.keys.filter { built.environment[$0] == nil }.sorted()
        totalSeconds = seconds
    }

    /// A build that failed or was stopped, with its first line for the report.
    mutating func failed(_ error: any Error, seconds: Double) {
        let failure = MultipackError(error)
        outcome = failure.isInterrupted ? "interrupted" : "failed"
        self.failure = failure.lines.first
        totalSeconds = seconds
    }
}
