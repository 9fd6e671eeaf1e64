import FoundationEssentials
import Glibc

/// How multipack was started: its own directory and environment.
public struct Invocation: Sendable {
    /// multipack's buildpack directory: the merged release, the combined export and the record live here.
    public var buildpackDir: String
    /// multipack's own environment.
    public var environment: [String: String]
    /// The files, processes, HTTP, clock, log and stop token every stage works through.
    public var context: BuildContext
    public var log: Log { context.log }
    public var stop: StopToken { context.stop }

    public init(buildpackDir: String, environment: [String: String], context: BuildContext = .production) {
        self.buildpackDir = buildpackDir
        self.environment = environment
        self.context = context
    }

    /// Relative paths in `.buildpacks` are relative to the app root. A local build compiles a copy
    /// of the app, and says where the original is.
    func appDir(for dirs: BuildDirectories) -> String {
        environment[HiddenVariable.appDir].map(Files.absolute) ?? dirs.build
    }
}

/// `bin/compile` and `bin/test-compile` (SPEC §5–§8): the build as a value flowing through its
/// stages, the record kept as they go.
public struct Compile {
    public var dirs: BuildDirectories
    public var invocation: Invocation
    public var testCompile = false

    public init(dirs: BuildDirectories, invocation: Invocation, testCompile: Bool = false) {
        self.dirs = dirs
        self.invocation = invocation
        self.testCompile = testCompile
    }

    public func run() throws {
        let context = invocation.context
        let start = context.clock.now
        let request = BuildRequest(
            dirs: dirs, appDir: invocation.appDir(for: dirs), environment: invocation.environment,
            testCompile: testCompile)
        // One thread removes what the build replaces and leaves, and what killed builds left in
        // TMPDIR; the build ends once it is done.
        let trash = SerialWork()
        defer { trash.finish() }
        trash.add { ScratchDirectory.sweepTemporaryRoot() }
        // What an earlier compile of this BUILD_DIR left goes first, so that a failed or killed
        // compile can never leave the previous build's release or "succeeded" record behind.
        let state = BuildState(buildpackDir: invocation.buildpackDir, buildDir: dirs.build)
        try state.clear(trash: trash)
        var record = BuildRecord(running: request, buildDir: state.buildDir, pid: getpid())
        record.save(state, replacedGoesTo: trash)
        let children = try ChildDirectories(kept: testCompile ? state.childrenDir : nil, trash: trash)
        defer { children.removeAll() }
        do {
            let plan = try ListStage().run(request, in: context)
            record.lock = plan.lock
            let fetched = try FetchStage(workDir: children.path, heading: Self.heading(plan)).run(plan, in: context)
            record.children = fetched.map(BuildRecord.Child.init)
            let stage = ChildrenStage(plan: plan, runsHooks: plan.settings.hooks == .multipack)
            let built = try stage.run(fetched, in: context) { child, _ in
                record.children[child.position - 1] = BuildRecord.Child(child)
            }
            children.removeAll()
            let slug = try SlugStage(plan: plan).run(built, in: context)
            let release = try ReleaseStage(mode: plan.settings.release).run(built.children, in: context)
            // A signal that came after the last stage still means the build did not finish.
            try context.stop.check("at the end of the build")
            record.succeeded(
                built, slug, release, base: HiddenVariable.removingOwn(invocation.environment),
                seconds: context.seconds(since: start))
            try RecordStage(state: state, buildpackDir: invocation.buildpackDir, trash: trash).run(record, in: context)
        } catch {
            record.failed(error, seconds: context.seconds(since: start))
            record.save(state, replacedGoesTo: trash)
            Files.remove(state.childrenDir)
            throw error
        }
    }

    static func heading(_ plan: BuildPlan) -> String {
        "Fetching \(plan.entries.count) buildpack\(plan.entries.count == 1 ? "" : "s")"
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
