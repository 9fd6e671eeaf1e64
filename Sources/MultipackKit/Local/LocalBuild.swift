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
        guard Files.isDirectory(appDir) else {
            throw UsageError("\(appDir) is not a directory.", hint: "Give multipack the path of your app's directory.")
        }
        let configVars = try options.configArguments.resolve()
        let entries = try buildpackEntries()
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
                dirs: dirs, buildpackDir: scratch + "/buildpack", appDir: appDir, environment: environment, log: log)
            : ListStages(
                entries: entries, dirs: dirs, workDir: scratch + "/children", environment: environment,
                configVars: Dictionary(configVars, uniquingKeysWith: { $1 }), log: log)
        defer {
            summary.children = stages.record?.children.map(LocalBuildSummary.Child.init) ?? []
            summary.hookSeconds = stages.record?.hookSeconds ?? [:]
        }
        do {
            try stages.compile(testCompile: mode == .ci)
        } catch let reported as ReportedFailure {
            summary.failure = stages.record?.failure
            throw reported
        }

        if mode == .ci {
            log.step("Running the tests")
            try stages.test()
            log.step("Tests passed")
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

        log.step("Compressing...")
        let slugPath = options.slugPath.map(Files.absolute) ?? buildDir + ".slug.tgz"
        let bytes = try Slug.pack(buildDir, to: slugPath)
        try Files.write(final.yaml, to: LocalState.releaseSidecar(for: slugPath))
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
        log.step("Build directory: \(buildDir)")
        log.detail("Release (for multipack run): \(releasePath)")
        log.detail("Report: \(reportPath)")
        if let web = processTypes.first(where: { $0.key == "web" }) ?? processTypes.first {
            log.detail("Try it: multipack run \(slugPath) \(web.key)")
        }
    }

    /// `--buildpack` values, read as `.buildpacks` lines are.
    private func buildpackEntries() throws -> [BuildpackEntry] {
        var entries: [BuildpackEntry] = []
        for (index, text) in options.buildpacks.enumerated() {
            do {
                let parsed = try BuildpackList.parse(text)
                guard parsed.count == 1, var entry = parsed.first else {
                    throw BuildpackListError(line: 1, text: text, reason: "it is empty")
                }
                entry.line = index + 1
                entries.append(entry)
            } catch {
                throw UsageError(
                    "--buildpack `\(Masking.url(text))` is not a buildpack reference: \((error as? BuildpackListError)?.reason ?? "\(error)").",
                    hint:
                        "Give a git URL (optionally with #ref), an archive URL, a registry name (namespace/name) or a local directory."
                )
            }
        }
        return entries
    }

    /// The app's files, except `.git` (Heroku builds the pushed tree, not the repository).
    private func copyApp(to buildDir: String) throws {
        for name in Files.list(options.appDir) where name != ".git" {
            do {
                try FileManager.default.copyItem(atPath: options.appDir + "/" + name, toPath: buildDir + "/" + name)
            } catch {
                throw BuildFailure(
                    "Could not copy the app into the build directory: \(options.appDir)/\(name)", details: ["\(error)"],
                    hint: "Check that every file in the app is readable and that \(buildDir) has room.")
            }
        }
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

/// A failure whose ` !     ` block a child process already printed: only its exit code is left.
struct ReportedFailure: Error {
    var code: Int32
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
