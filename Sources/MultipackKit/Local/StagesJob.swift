import FoundationEssentials
import Glibc

/// The part of a local build that runs where the children see Heroku's layout: the stages
/// (detect, compile, release, report, or CI's test-compile and test) over directories the outer
/// `multipack build` prepared. It is the hidden verb `multipack stages JOB`, started inside the
/// sandbox (or on the host when there is none); the outer build packs the slug from what it left.
public struct StagesJob: Codable, Sendable {
    var ci = false
    /// The list to run as Heroku's own list runs it (`--buildpack`, app.json's); empty: multipack
    /// over the app's `.buildpacks`.
    var entries: [BuildpackEntry] = []
    /// Where `entries` came from, as the log names it: `--buildpack`, app.json's list.
    var listName = "--buildpack"
    /// The app's own directory (relative `.buildpacks` paths are relative to it).
    var appDir: String
    /// What the entries' relative paths are relative to: where `multipack build` was started for
    /// `--buildpack`, the app for app.json's.
    var entriesBase: String
    var build: String
    var cache: String
    var env: String
    /// A private directory of the job's: multipack's buildpack state and fetched children.
    var work: String
    /// Where the job writes its `Outcome`.
    var outcome: String

    struct Outcome: Codable {
        var code: Int32 = 1
        var failure: String?
        var record: BuildRecord?
        var release: String?
        var report: String?
    }

    /// Runs the job; a failure it printed already is thrown with its exit code.
    public static func run(json: String, invocation: Invocation) throws {
        guard let job = try? JSONDecoder().decode(StagesJob.self, from: Data(json.utf8)) else {
            throw MultipackError.usage("multipack stages takes the job multipack build gives it.")
        }
        var outcome = Outcome()
        job.perform(&outcome, invocation: invocation)
        if let data = try? JSONEncoder().encode(outcome) {
            try? Files.write(String(decoding: data, as: UTF8.self), to: job.outcome)
        }
        if outcome.code != 0 { throw MultipackError.printedBefore(exitCode: outcome.code, headline: nil) }
    }

    private func perform(_ outcome: inout Outcome, invocation: Invocation) {
        let log = invocation.log
        let dirs = BuildDirectories(build: build, cache: cache, env: env)
        var stages: (any BuildStages)?
        do {
            for name in ["buildpack", "children"] { try Files.makeDirectory(work + "/" + name) }
            var environment = invocation.environment
            environment["PWD"] = nil
            // How the user named multipack is for the verbs' hints, not for buildpacks or app scripts.
            let commandName = environment.removeValue(forKey: HiddenVariable.commandName)
            stages =
                entries.isEmpty
                ? SelfStages(
                    dirs: dirs, buildpackDir: work + "/buildpack", appDir: appDir, environment: environment,
                    commandName: commandName, failureFile: work + "/failure", context: invocation.context)
                : ListStages(
                    entries: entries, listName: listName, dirs: dirs, workDir: work + "/children",
                    callerDir: entriesBase,
                    environment: environment, configVars: Self.configVars(in: env), context: invocation.context)
            try stages!.compile(testCompile: ci)
            if ci {
                try runTests(
                    stages!, appJSON: try AppJSON.read(appDir + "/app.json"),
                    configVars: LocalRun.configVars(in: env), context: invocation.context)
            } else {
                outcome.release = try stages!.release().yaml
                outcome.report = stages!.report()
            }
            outcome.code = 0
        } catch {
            let failure = MultipackError(error)
            if !failure.printed { log.failure(failure) }
            outcome.code = failure.exitCode
            outcome.failure =
                failure.printed ? (failure.headline.isEmpty ? nil : failure.headline) : failure.lines.first
        }
        outcome.record = stages?.record
        if outcome.failure == nil, outcome.code != 0 { outcome.failure = outcome.record?.failure }
    }

    /// `--buildpack` values, read as `.buildpacks` lines are.
    static func entries(_ buildpacks: [String], directory: String) throws -> [BuildpackEntry] {
        var entries: [BuildpackEntry] = []
        for (index, text) in buildpacks.enumerated() {
            do throws(BuildpackListError) {
                // Paths given on the command line are relative to where multipack was started.
                entries.append(try BuildpackList.entry(text, line: index + 1, directory: directory))
            } catch {
                throw MultipackError.usage(
                    "--buildpack `\(Masking.url(text))` is not a buildpack reference: \(error.reason).",
                    hint:
                        "Give a git URL (optionally with #ref), an archive URL, a registry name (namespace/name) or a local directory."
                )
            }
        }
        return entries
    }

    /// The paths on this machine that `entries` read, relative ones against `base`: the sandbox
    /// binds them in (URLs are fetched over the network).
    static func localPaths(_ entries: [BuildpackEntry], base: String) -> [String] {
        entries.compactMap { entry -> String? in
            switch entry.reference {
            case .directory(let path): return Files.join(base, path)
            case .git(let url, _), .archive(let url):
                if url.hasPrefix("file://") { return String(url.dropFirst(7)) }
                let local = Fetcher.localOrRemote(url, appDir: base)
                return local == url && !url.hasPrefix("/") ? nil : local
            case .registry: return nil
            }
        }
    }

    static func configVars(in envDir: String) -> [String: String] {
        var vars: [String: String] = [:]
        for name in Files.list(envDir) { vars[name] = try? Files.read(envDir + "/" + name) }
        return vars
    }

    /// Runs one of app.json's scripts (`name`), by bash in the build directory as Heroku CI runs it
    /// in the test dyno: `.profile.d/*.sh` sourced first. A non-zero exit fails the run with that
    /// exit code (128 + the signal when one killed it).
    private func runAppJSONScript(
        _ script: String, name: String, environment: [String: String], context: BuildContext,
        failure: (Int32) -> String, hint: String
    ) throws {
        let log = context.log
        log.step("Running \(name)")
        let profile = "for f in .profile.d/*.sh; do if [ -r \"$f\" ]; then . \"$f\"; fi; done; unset f\n"
        let command = Command(
            "bash", ["-c", profile + script], in: build, environment: environment, stdout: .inherit,
            stderr: .inherit)
        if (try? Settings.boolean("BUILDPACK_XTRACE", environment["BUILDPACK_XTRACE"])) == true {
            log.detail("+ bash -c \(script)")
        }
        let code = try context.runner().run(command, owner: .other(name), stage: name).termination.exitCode
        guard code == 0 else {
            throw MultipackError(.exited(code), failure(code), details: ["Script: \(script)"], hint: hint)
        }
    }

    /// Heroku CI's part after test-compile (SPEC §8): app.json's `test-setup`, then its `test`
    /// script instead of the buildpacks' `bin/test` when it has one, whose exit code is the run's.
    private func runTests(
        _ stages: any BuildStages, appJSON: AppJSON?, configVars: [(key: String, value: String)],
        context: BuildContext
    ) throws {
        let log = context.log
        var environment = stages.testEnvironment()
        for (key, value) in configVars { environment[key] = value }
        if let setup = appJSON?.testSetup {
            try runAppJSONScript(
                setup, name: "app.json's test-setup script", environment: environment, context: context,
                failure: { "app.json's test-setup script failed with exit code \($0)." },
                hint: "Its output above says why; the tests did not run.")
        }
        if let test = appJSON?.test {
            try runAppJSONScript(
                test, name: "app.json's test script", environment: environment, context: context,
                failure: { "Tests failed: app.json's test script ended with exit code \($0)." },
                hint: "The test output above says which tests failed.")
        } else {
            log.step("Running the tests")
            try stages.test()
        }
        log.step("Tests passed")
    }
}

extension BuildpackList {
    /// One value read as a `.buildpacks` line is (a `--buildpack`, an app.json URL): exactly one
    /// entry, numbered `line`.
    static func entry(_ text: String, line: Int, directory: String) throws(BuildpackListError) -> BuildpackEntry {
        let parsed = try parse(text, directory: directory)
        guard parsed.count == 1, var entry = parsed.first else {
            throw BuildpackListError(line: line, text: text, reason: "it is empty")
        }
        entry.line = line
        return entry
    }
}
