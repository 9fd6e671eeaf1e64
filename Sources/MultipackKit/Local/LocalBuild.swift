import FoundationEssentials
import Glibc

/// What `multipack build` and `multipack ci` were asked to do.
public struct LocalBuildOptions: Sendable {
    public var appDir: String
    /// `--buildpack`: a Heroku-style list, each run as a top-level buildpack. Empty: multipack
    /// runs itself over the app's `.buildpacks`.
    public var buildpacks: [String] = []
    public var configArguments = ConfigVarArguments()
    public var cacheDir: String?
    public var noCache = false
    public var stack = "heroku-24"
    public var slugPath: String?
    public var slugLimitMB = Slug.defaultLimitMB
    public var json = false

    public init(appDir: String) {
        self.appDir = Files.absolute(appDir)
    }

    /// The stacks Heroku builds on, past and present: what `--stack` accepts.
    public static let stacks = ["heroku-18", "heroku-20", "heroku-22", "heroku-24"]

    /// Command-line values that no build could use: usage errors (exit 2) before anything runs.
    public func validate() throws(UsageError) {
        guard Self.stacks.contains(stack) else {
            throw UsageError(
                "--stack \(Masking.text(stack)) is not a Heroku stack.",
                hint: "Give one of \(Self.stacks.joined(separator: ", ")).")
        }
        guard slugLimitMB >= 0 else {
            throw UsageError("--slug-limit must be a number of MB, 0 or more.", hint: "Heroku's limit is 500.")
        }
    }
}

/// `multipack build APP_DIR` (Heroku's slug compiler on this machine) and `multipack ci APP_DIR`
/// (Heroku CI's test-compile and test). The app is copied into a fresh `build_<hex>` directory
/// and the buildpacks run over it as separate processes, with the environment Heroku gives a build.
public struct LocalBuild {
    public enum Mode: Sendable { case build, ci }

    public var options: LocalBuildOptions
    public var invocation: Invocation
    public var mode: Mode

    public init(options: LocalBuildOptions, invocation: Invocation, mode: Mode = .build) {
        self.options = options
        self.invocation = invocation
        self.mode = mode
    }

    var log: Log { invocation.log }

    /// Runs the build and returns its exit code. Every failure is printed here, once; with
    /// `--json` the log goes to stderr and stdout gets one JSON object, whatever the outcome.
    public func run() -> Int32 {
        let start = ContinuousClock.now
        let jsonOutput = options.json ? StandardOutput.divertToStandardError() : nil
        var summary = LocalBuildSummary(
            command: mode == .build ? "build" : "ci", app: options.appDir, stack: options.stack)
        var code: Int32 = 0
        do {
            try perform(&summary)
        } catch let reported as ReportedFailure {
            code = reported.code
            summary.failure = summary.failure ?? reported.failure
        } catch let script as ScriptFailure {
            log.failure(script.failure)
            code = script.code
            summary.failure = script.failure.headline
        } catch {
            log.failure(error)
            code = ErrorReport.exitCode(for: error)
            summary.failure = ErrorReport.lines(for: error).first
        }
        summary.exitCode = code
        summary.outcome = code == 0 ? "succeeded" : SignalForwarding.stopSignal != nil ? "interrupted" : "failed"
        summary.seconds = start.duration(to: .now).seconds
        if let jsonOutput {
            Log.writeToDescriptor(summary.json + "\n", jsonOutput)
            close(jsonOutput)
        }
        return code
    }

    private func perform(_ summary: inout LocalBuildSummary) throws {
        let appDir = options.appDir
        try options.validate()
        guard Files.isDirectory(appDir) else {
            throw UsageError("\(appDir) is not a directory.", hint: "Give multipack the path of your app's directory.")
        }
        let configVars = try options.configArguments.resolve(environment: invocation.environment)
        let entries = try buildpackEntries()
        // A bad .buildpacks line is bad input (exit 2), said before anything is copied or run.
        if entries.isEmpty, Files.exists(appDir + "/.buildpacks") {
            _ = try BuildpackList.load(appDir + "/.buildpacks", directory: appDir)
        }
        let appJSON = mode == .ci ? try AppJSON.read(appDir + "/app.json") : nil
        let scratch = try Files.temporaryDirectory(prefix: "multipack-local-")
        defer { Files.remove(scratch) }
        for name in ["buildpack", "env", "tmp", "children"] { try Files.makeDirectory(scratch + "/" + name) }

        let buildDir = try Self.freshBuildDirectory()
        summary.buildDirectory = buildDir
        log.step("Building \(appDir) in \(buildDir)")
        try copyApp(to: buildDir)
        if mode == .build { applySlugIgnore(buildDir) }

        let cache = try prepareCache(scratch: scratch)
        summary.cache = options.noCache ? nil : cache
        let envDir = scratch + "/env"
        for (name, value) in configVars { try Files.write(value, to: envDir + "/" + name) }
        let dirs = BuildDirectories(build: buildDir, cache: cache, env: envDir)

        let sourceVersion = Self.sourceVersion(of: appDir, environment: invocation.environment)
        summary.sourceVersion = sourceVersion
        var environment = buildEnvironment(sourceVersion: sourceVersion, tmp: scratch + "/tmp")
        if mode == .ci {
            environment["CI"] = "true"
            environment["HEROKU_TEST_RUN_ID"] = UUID().uuidString.lowercased()
            if let sourceVersion { environment["HEROKU_TEST_RUN_COMMIT_VERSION"] = sourceVersion }
        }

        var stages: any BuildStages =
            entries.isEmpty
            ? SelfStages(
                dirs: dirs, buildpackDir: scratch + "/buildpack", appDir: appDir, environment: environment,
                failureFile: scratch + "/failure", log: log)
            : ListStages(
                entries: entries, dirs: dirs, workDir: scratch + "/children", environment: environment,
                configVars: Dictionary(configVars, uniquingKeysWith: { $1 }), log: log)
        defer {
            summary.children = stages.record?.children.map(LocalBuildSummary.Child.init) ?? []
            summary.hookSeconds = stages.record?.hookSeconds ?? [:]
            summary.hookGrowth = stages.record?.hookGrowth ?? [:]
            summary.buildDirSize = stages.record?.buildDirSize
            summary.slugfilterRemoved = stages.record?.slugFilterRemoved
            summary.lock = stages.record?.lock
        }
        do {
            try stages.compile(testCompile: mode == .ci)
        } catch let reported as ReportedFailure {
            summary.failure = stages.record?.failure
            throw reported
        }

        if mode == .ci {
            try runTests(stages, appJSON: appJSON, configVars: configVars, buildDir: buildDir)
            if options.slugPath != nil { try writeSlug(buildDir, &summary) }
            return
        }

        let release = try stages.release()
        let procfile = Procfile.read(buildDir + "/Procfile")
        let processTypes = Procfile.processTypes(release: release, procfile: procfile)
        logProcessTypes(processTypes, procfile: procfile)
        summary.processTypes = Dictionary(processTypes.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 })
        var final = release
        final.processTypes = processTypes
        let releasePath = LocalState.releaseSidecar(for: buildDir)
        try Files.write(final.yaml, to: releasePath)
        summary.release = releasePath
        let reportPath = buildDir + ".report.yml"
        try Files.write(stages.report(), to: reportPath)
        summary.report = reportPath

        // The build is done: later builds of this app, and `multipack run APP_DIR`, find it.
        let state = LocalState.appDirectory(for: appDir, environment: invocation.environment)
        try? Files.makeDirectory(state)
        try? Files.write(buildDir + "\n", to: LocalState.lastBuildPointer(state))

        let slugPath = try writeSlug(buildDir, &summary)
        try Files.write(final.yaml, to: LocalState.releaseSidecar(for: slugPath))
        log.step("Build directory: \(buildDir)")
        log.detail("Release (for multipack run): \(releasePath)")
        log.detail("Report: \(reportPath)")
        if let web = processTypes.first(where: { $0.key == "web" }) ?? processTypes.first {
            log.detail("Try it: multipack run \(slugPath) \(web.key)")
        }
    }

    /// Packs BUILD_DIR as the slug and checks it against Heroku's limits.
    @discardableResult
    private func writeSlug(_ buildDir: String, _ summary: inout LocalBuildSummary) throws -> String {
        log.step("Compressing...")
        let slugPath = options.slugPath.map(Files.absolute) ?? buildDir + ".slug.tgz"
        let bytes = try Slug.pack(buildDir, to: slugPath)
        let limit = Int64(options.slugLimitMB) << 20
        summary.slug = LocalBuildSummary.SlugInfo(path: slugPath, bytes: bytes, limitBytes: limit)
        log.detail("Done: \(Slug.formatSize(bytes))")
        log.detail(
            "Slug: \(slugPath) (\(bytes) bytes; Heroku warns above 300M and refuses above \(options.slugLimitMB)M)")
        if bytes > limit {
            throw BuildFailure(
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

    /// Heroku CI's part after test-compile (SPEC §8): app.json's `test-setup`, then its `test`
    /// script instead of the buildpacks' `bin/test` when it has one, whose exit code is the run's.
    private func runTests(
        _ stages: any BuildStages, appJSON: AppJSON?, configVars: [(key: String, value: String)], buildDir: String
    ) throws {
        var environment = stages.testEnvironment()
        for (key, value) in configVars { environment[key] = value }
        if let setup = appJSON?.testSetup {
            log.step("Running app.json's test-setup script")
            let code = try runScript(setup, environment: environment, in: buildDir)
            guard code == 0 else {
                throw ScriptFailure(
                    code: code,
                    failure: BuildFailure(
                        "app.json's test-setup script failed with exit code \(code).",
                        details: ["Script: \(setup)"], hint: "Its output above says why; the tests did not run."))
            }
        }
        if let test = appJSON?.test {
            log.step("Running app.json's test script")
            let code = try runScript(test, environment: environment, in: buildDir)
            guard code == 0 else {
                throw ScriptFailure(
                    code: code,
                    failure: BuildFailure(
                        "Tests failed: app.json's test script ended with exit code \(code).",
                        details: ["Script: \(test)"], hint: "The test output above says which tests failed."))
            }
        } else {
            log.step("Running the tests")
            try stages.test()
        }
        log.step("Tests passed")
    }

    /// An app.json script, run by bash in the build directory as Heroku CI runs it in the test
    /// dyno: `.profile.d/*.sh` sourced first. Returns its exit code (128 + signal when killed).
    private func runScript(_ script: String, environment: [String: String], in buildDir: String) throws -> Int32 {
        let profile = "for f in .profile.d/*.sh; do if [ -r \"$f\" ]; then . \"$f\"; fi; done; unset f\n"
        let command = Command(
            "bash", ["-c", profile + script], in: buildDir, environment: environment, stdout: .inherit,
            stderr: .inherit)
        if (try? Settings.boolean("BUILDPACK_XTRACE", environment["BUILDPACK_XTRACE"])) == true {
            log.detail("+ bash -c \(script)")
        }
        let result = try Spawner.run(command)
        if SignalForwarding.stopSignal != nil { throw ReportedFailure(code: 1) }
        return result.termination.exitCode
    }

    /// `--buildpack` values, read as `.buildpacks` lines are.
    private func buildpackEntries() throws -> [BuildpackEntry] {
        var entries: [BuildpackEntry] = []
        for (index, text) in options.buildpacks.enumerated() {
            do {
                // Paths given on the command line are relative to where multipack was started.
                let parsed = try BuildpackList.parse(text, directory: Files.absolute("."))
                guard parsed.count == 1, var entry = parsed.first else {
                    throw BuildpackListError(line: 1, text: text, reason: "it is empty")
                }
                entry.line = index + 1
                entries.append(entry)
            } catch {
                throw UsageError(
                    "--buildpack `\(Masking.url(text))` is not a buildpack reference: \((error as? BuildpackListError)?.reason ?? ErrorReport.reason(error)).",
                    hint:
                        "Give a git URL (optionally with #ref), an archive URL, a registry name (namespace/name) or a local directory."
                )
            }
        }
        return entries
    }

    /// The app's files, except `.git` (Heroku builds the pushed tree, not the repository).
    private func copyApp(to buildDir: String) throws {
        var skipped: [String] = []
        for name in Files.list(options.appDir) where name != ".git" {
            do {
                skipped += try Files.copyTree(options.appDir + "/" + name, to: buildDir + "/" + name)
                    .map { $0.hasPrefix("/") ? name : name + "/" + $0 }
            } catch {
                throw BuildFailure(
                    "Could not copy the app into the build directory: \(options.appDir)/\(name)",
                    details: [ErrorReport.reason(error)],
                    hint: "Check that every file in the app is readable and that \(buildDir) has room.")
            }
        }
        // Sockets and FIFOs are not files a slug can hold; opening a FIFO would block the build.
        for path in skipped.prefix(20) {
            log.detail("Skipped \(path): a socket, FIFO or device is not copied into the build.")
        }
        if skipped.count > 20 { log.detail("Skipped \(skipped.count - 20) more sockets, FIFOs or devices.") }
    }

    private func applySlugIgnore(_ buildDir: String) {
        guard let text = try? Files.read(buildDir + "/.slugignore") else { return }
        let removed = SlugIgnore(text).apply(to: buildDir)
        log.step("Deleting \(removed.count) file\(removed.count == 1 ? "" : "s") matching .slugignore patterns.")
        for path in removed.prefix(20) { log.detail("- \(path)") }
        if removed.count > 20 { log.detail("(and \(removed.count - 20) more)") }
    }

    private func prepareCache(scratch: String) throws -> String {
        if options.noCache {
            let cache = scratch + "/cache"
            try Files.makeDirectory(cache)
            log.step("Using a throwaway cache (--no-cache): every buildpack starts cold")
            return cache
        }
        if let dir = options.cacheDir {
            let cache = Files.absolute(dir)
            try Files.makeDirectory(cache)
            log.step("Using the cache in \(cache) (--cache)")
            return cache
        }
        let cache = LocalState.appDirectory(for: options.appDir, environment: invocation.environment) + "/cache"
        try Files.makeDirectory(cache)
        log.step("Using the cache in \(cache)")
        log.detail("(kept between builds of this app; `multipack cache purge \(options.appDir)` empties it)")
        return cache
    }

    /// What Heroku gives a build, and nothing else from this shell: HOME LANG PATH STACK
    /// SOURCE_VERSION REQUEST_ID (BUILDPACK_XTRACE when set), plus TMPDIR for the build's own
    /// temporary files.
    func buildEnvironment(sourceVersion: String?, tmp: String) -> [String: String] {
        let outer = invocation.environment
        var env: [String: String] = [:]
        env["HOME"] = outer["HOME"] ?? "/app"
        env["LANG"] = outer["LANG"].flatMap { $0.isEmpty ? nil : $0 } ?? "en_US.UTF-8"
        env["PATH"] = outer["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        env["STACK"] = options.stack
        env["SOURCE_VERSION"] = sourceVersion
        env["REQUEST_ID"] = UUID().uuidString.lowercased()
        env["BUILDPACK_XTRACE"] = outer["BUILDPACK_XTRACE"]
        env["TMPDIR"] = tmp
        return env
    }

    /// The commit of the app's git HEAD, when the app is in a repository.
    static func sourceVersion(of appDir: String, environment: [String: String]) -> String? {
        var env = environment
        env["GIT_DIR"] = nil
        env["GIT_WORK_TREE"] = nil
        guard
            let result = try? Spawner.run(
                Command("git", ["rev-parse", "--verify", "-q", "HEAD"], in: appDir, environment: env)),
            result.termination.succeeded
        else { return nil }
        let commit = result.stdoutText.trimmingCharacters("\n")
        return commit.isEmpty ? nil : commit
    }

    private func logProcessTypes(_ types: [(key: String, value: String)], procfile: [(key: String, value: String)]) {
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

    static func freshBuildDirectory() throws -> String {
        let base = Files.temporaryRoot
        var generator = SystemRandomNumberGenerator()
        while true {
            let hex = String(generator.next() as UInt32, radix: 16).leftPadded(to: 8)
            let path = "\(base)/build_\(hex)"
            if mkdir(path, 0o755) == 0 { return path }
            if errno != EEXIST { throw FileError(path: path, action: "create", errno: errno) }
        }
    }

    static func executablePath() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return CommandLine.arguments[0] }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// A failure whose ` !     ` block a child process already printed: only its exit code is left
/// (and, for `--json`, its first line when the child process left it).
struct ReportedFailure: Error {
    var code: Int32
    var failure: String?
}

/// An app.json script failed: the run ends with the script's own exit code.
struct ScriptFailure: Error {
    var code: Int32
    var failure: BuildFailure
}

enum StandardOutput {
    /// Points descriptor 1 at stderr (so this process's log and every child's output go there)
    /// and returns a close-on-exec descriptor for the real stdout, which `--json` keeps for itself.
    static func divertToStandardError() -> Int32 {
        let saved = fcntl(1, F_DUPFD_CLOEXEC, 3)
        dup2(2, 1)
        return saved
    }
}
