/// One child in the build, with what it reported so far.
public struct ChildRun: Sendable {
    public var fetched: FetchedChild
    public var position: Int
    public var total: Int
    public var name: String = ""
    public var detectSeconds = 0.0
    public var compileSeconds = 0.0
    public var releaseSeconds = 0.0
    public var release = Release()
    /// What BUILD_DIR gained during this child's turn; nil with `MULTIPACK_SIZES=0`.
    public var growth: TreeSize?

    public var label: String { "[\(position)/\(total)]" }
    public var url: String { fetched.entry.maskedText }
    public var displayName: String { name.isEmpty ? url : name }
    /// The child's own time: its detect, compile and release processes.
    public var ownSeconds: Double { detectSeconds + compileSeconds + releaseSeconds }
}

/// Runs one child's entry points (SPEC §7.2).
struct ChildRunner {
    var dirs: BuildDirectories
    var context: BuildContext
    /// `BUILDPACK_XTRACE`: prints each command before it runs.
    var trace: @Sendable (Command) -> Void = { _ in }
    var runner: StageRunner { context.runner(trace: trace) }
    var stop: StopToken { context.stop }

    func detect(_ child: inout ChildRun, environment: [String: String]) throws {
        let script = child.fetched.directory + "/bin/detect"
        guard Files.exists(script) else {
            throw child.failure(stage: "detect", "The buildpack has no bin/detect, so it is not a buildpack.")
        }
        // detect prints a name; its output is capped (200 MB of it once cost 794 MB of memory).
        var command = Command(script, [dirs.build], in: child.fetched.directory, environment: environment)
        command.captureLimit = 1 << 20
        let result = try runner.run(command, owner: .child(child.named), stage: "detect")
        child.detectSeconds = result.seconds
        guard result.termination.succeeded else {
            var details = ["URL: \(child.url)", "Stage: detect (\(result.termination))"]
            let stderr = result.stderrText.trimmingBlanks().trimmingCharacters("\n")
            if !stderr.isEmpty { details += ["", stderr] }
            throw MultipackError.build(
                "App not compatible with buildpack: \(child.url)", details: details,
                hint:
                    "Buildpack \(child.label) did not recognise the app. Check the order in .buildpacks and that the app has the files this buildpack looks for."
            )
        }
        child.name = String(result.stdoutText.lines.first ?? "").trimmingBlanks()
    }

    func compile(_ child: inout ChildRun, environment: [String: String], testCompile: Bool) throws {
        var stage = "compile"
        var script = child.fetched.directory + "/bin/compile"
        if testCompile, Files.exists(child.fetched.directory + "/bin/test-compile") {
            stage = "test-compile"
            script = child.fetched.directory + "/bin/test-compile"
        }
        guard Files.exists(script) else {
            throw child.failure(stage: stage, "The buildpack has no bin/\(stage).")
        }
        let command = Command(
            script, [dirs.build, dirs.cache, dirs.env], in: child.fetched.directory, environment: environment,
            stdout: .inherit, stderr: .inherit)
        let result = try runner.run(command, owner: .child(child.named), stage: stage).succeeded { termination in
            child.failure(
                stage: stage, "bin/\(stage) failed with \(termination).",
                hint: "The buildpack's own output above says why; no later buildpack was run.")
        }
        child.compileSeconds = result.seconds
    }

    /// Sources the child's `export`, if it wrote one, on top of the environment so far.
    func applyExport(_ child: ChildRun, to environment: [String: String]) throws -> (
        env: [String: String], change: EnvironmentChange
    ) {
        let file = child.fetched.directory + "/export"
        guard Files.exists(file) else { return (environment, EnvironmentChange()) }
        do {
            let change = try BuildEnvironment.sourceExport(
                file, environment: environment, in: child.fetched.directory,
                owner: "Buildpack \(child.label) \(child.displayName) (its export file)", processes: context.processes,
                stop: stop)
            return (BuildEnvironment.apply(change, to: environment), change)
        } catch {
            try stop.check(child.whileIn("export"))
            let stderr = error.stderr.trimmingBlanks().trimmingCharacters("\n")
            if error.endedEarly {
                throw child.failure(
                    stage: "export",
                    "The export file it wrote ended the shell early (an `exit` or `exec` in it), so the environment it hands on cannot be read.\(stderr.isEmpty ? "" : "\n\n" + stderr)",
                    hint:
                        "The export file is sourced by bash for the buildpacks after it: it must set variables and return, never exit or exec."
                )
            }
            throw child.failure(
                stage: "export",
                "Sourcing the export file it wrote failed with \(error.termination).\(stderr.isEmpty ? "" : "\n\n" + stderr)",
                hint:
                    "The export file is a bash script the buildpack writes for the buildpacks after it; it must run cleanly under bash."
            )
        }
    }

    func release(_ child: inout ChildRun, environment: [String: String]) throws {
        let script = child.fetched.directory + "/bin/release"
        guard Files.exists(script) else { return }
        let command = Command(
            script, [dirs.build], in: child.fetched.directory, environment: environment, stderr: .inherit)
        let result = try runner.run(command, owner: .child(child.named), stage: "release").succeeded { termination in
            child.failure(stage: "release", "bin/release failed with \(termination).")
        }
        child.releaseSeconds = result.seconds
        guard result.stdout.count < Command.defaultCaptureLimit else {
            throw child.failure(
                stage: "release",
                "bin/release printed more than \(Command.defaultCaptureLimit >> 20) MB, more than any release can need."
            )
        }
        do {
            child.release = try Release.parse(result.stdoutText, stop: stop)
        } catch {
            try stop.check(child.whileIn("release"))
            throw child.failure(
                stage: "release",
                "bin/release must print a YAML mapping, but \(Self.cut("\(error)", to: 300)).\n\n"
                    + "It printed:\n\(Self.excerpt(result.stdout))")
        }
    }

    /// The first lines of a child's output as an error shows them: at most 10 lines of at most
    /// 200 characters, and how much more there was (a release of 10 MB is not echoed whole).
    static func excerpt(_ output: [UInt8]) -> String {
        var text = String(decoding: output.prefix(10 * 201), as: UTF8.self)[...]
        if text.hasSuffix("\n") { text = text.dropLast() }
        let first = text.lines.prefix(10).map(String.init)
        var lines = first.map { "    " + cut($0, to: 200) }
        // What the lines shown held, their line ends included, against all there was.
        let whole = first.reduce(0) { $0 + $1.utf8.count + 1 } >= output.count && first.allSatisfy { $0.count <= 200 }
        if !whole { lines.append("    (\(output.count) bytes in all; the rest is not shown)") }
        return lines.joined(separator: "\n")
    }

    static func cut(_ text: String, to limit: Int) -> String {
        text.count <= limit ? text : text.prefix(limit) + "…"
    }
}

/// A child as the build's messages name it: `[2/3] Node.js`, its masked URL and its version.
struct ChildName: Sendable {
    var label: String
    var displayName: String
    var url: String
    var version: String

    /// Where the build was when it was stopped during this child's `stage`.
    func whileIn(_ stage: String) -> String {
        "while buildpack \(label) \(displayName) (\(url)) was in \(stage)"
    }

    /// This child's failure during `stage`: the block names it, its URL, version and stage.
    func failure(stage: String, _ reason: String, hint: String? = nil) -> MultipackError {
        .build(
            "Buildpack \(label) \(displayName) failed during \(stage)",
            details: ["URL: \(url)", "Version: \(version)", "Stage: \(stage)", "", reason],
            hint: hint)
    }
}

extension ChildRun {
    var named: ChildName { ChildName(label: label, displayName: displayName, url: url, version: fetched.version) }

    func whileIn(_ stage: String) -> String { named.whileIn(stage) }

    func failure(stage: String, _ reason: String, hint: String? = nil) -> MultipackError {
        named.failure(stage: stage, reason, hint: hint)
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
