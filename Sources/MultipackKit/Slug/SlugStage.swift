/// What the slug's stage did to BUILD_DIR.
struct SlugOutcome: Sendable {
    /// What `.slugfilter` removed, and how long it took; nil without one.
    var filterRemoved: TreeSize?
    var filterSeconds: Double?
    /// BUILD_DIR at the end, and the time all the size walks took; nil with `MULTIPACK_SIZES=0`.
    var size: TreeSize?
    var sizesSeconds: Double?
}

/// Trims BUILD_DIR with `.slugfilter` after `post_compile` (SPEC §14), saying what went, the
/// biggest first, then measures what the slug will hold.
struct SlugStage: BuildStage {
    var plan: BuildPlan

    func run(_ built: ChildrenStage.Output, in context: BuildContext) throws -> SlugOutcome {
        let buildDir = plan.request.dirs.build
        var outcome = SlugOutcome()
        if let filter = try SlugFilter.read(buildDir) {
            (outcome.filterRemoved, outcome.filterSeconds) = try trim(buildDir, with: filter, in: context)
        }
        if plan.settings.sizes, var sizes = built.sizes {
            outcome.size = sizes.measure()
            outcome.sizesSeconds = sizes.seconds
        }
        return outcome
    }

    private func trim(_ buildDir: String, with filter: SlugFilter, in context: BuildContext) throws -> (
        TreeSize, Double
    ) {
        let log = context.log
        log.step("Trimming the slug with .slugfilter")
        for number in filter.trailingBlankLines {
            log.warning(".slugfilter line \(number): the pattern ends in a blank, which is part of it (as in rsync).")
        }
        let start = context.clock.now
        let outcome = try filter.apply(to: buildDir)
        let seconds = context.seconds(since: start)
        for path in outcome.unreadable {
            log.warning(".slugfilter: \(path) cannot be read, so it was kept whole without looking inside.")
        }
        guard !outcome.removed.isEmpty else {
            log.detail("Nothing matched a `-` rule: nothing removed")
            return (outcome.total, seconds)
        }
        let files = outcome.total.files
        log.detail(
            "Removed \(files) file\(files == 1 ? "" : "s") (\(TreeSize.format(outcome.total.bytes))) in "
                + "\(formatSeconds(seconds)):")
        let biggest = outcome.removed.sorted { $0.size.bytes > $1.size.bytes }
        for (path, size) in biggest.prefix(20) {
            log.detail("- \(path)  \(path.hasSuffix("/") ? size.description : TreeSize.format(size.bytes))")
        }
        if biggest.count > 20 { log.detail("(and \(biggest.count - 20) more)") }
        return (outcome.total, seconds)
    }
}
