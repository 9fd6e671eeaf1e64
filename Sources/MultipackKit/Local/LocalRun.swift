import FoundationEssentials
import Glibc

/// `multipack run BUILD_OR_SLUG PROCESS`: starts one of a build's processes the way a Heroku
/// dyno would, to check that what was built starts. A slug is extracted into a temporary
/// directory; a build directory is used as it is; an app directory means its last build.
public struct LocalRun {
    public var target: String
    public var process: String
    /// `--env K=V` and `--env-file FILE`, read when the run starts.
    public var configArguments = ConfigVarArguments()
    public var port = 5000
    public var invocation: Invocation

    public init(target: String, process: String, invocation: Invocation) {
        self.target = Files.absolute(target)
        self.process = process
        self.invocation = invocation
    }

    /// Slugs hold whole dependency trees: far more members than a buildpack archive.
    static let slugLimits = ArchiveLimits(maxTotalBytes: 16 << 30, maxEntries: 5_000_000)

    /// multipack's own lines go to stderr: stdout is the process's.
    var log: Log {
        let write = invocation.log.write
        return Log { text, _ in write(text, 2) }
    }

    /// Runs the process and returns its exit code (128 + the signal when a signal ended it).
    public func run() throws -> Int32 {
        var scratch: String?
        defer { if let scratch { Files.remove(scratch) } }
        let home: String
        let releasePath: String
        if Files.isRegularFile(target) {
            let dir = try Files.temporaryDirectory(prefix: "multipack-run-")
            scratch = dir
            log.step("Extracting the slug \(target) into \(dir)")
            do {
                try extractArchive(atPath: target, into: dir, limits: Self.slugLimits)
            } catch {
                throw UsageError(
                    "\(target) is not a slug multipack can extract: \(ErrorReport.reason(error))",
                    hint: "Give multipack run a slug that multipack build wrote, or a build directory.")
            }
            home = dir + "/app"
            guard Files.isDirectory(home) else {
                throw UsageError(
                    "\(target) is not a slug: it has no ./app/ directory.",
                    hint: "Give multipack run a slug that multipack build wrote, or a build directory.")
            }
            releasePath = LocalState.releaseSidecar(for: target)
        } else if Files.isDirectory(target) {
            home = try buildDirectory(for: target)
            releasePath = LocalState.releaseSidecar(for: home)
        } else {
            throw UsageError(
                "\(target) does not exist.",
                hint: "Give multipack run the slug or the build directory that multipack build printed.")
        }

        let release =
            Files.exists(releasePath) ? (try? Release.parse(try Files.read(releasePath))) ?? Release() : Release()
        let types = Procfile.processTypes(release: release, procfile: Procfile.read(home + "/Procfile"))
        guard let command = types.first(where: { $0.key == process })?.value else {
            throw UsageError(
                "There is no process type `\(process)` in \(target).",
                hint: types.isEmpty
                    ? "It declares none: add a Procfile to the app (`web: <command>`) and build it again."
                    : "It has: \(types.map(\.key).joined(separator: ", ")).")
        }

        var environment = dynoEnvironment(home: home)
        for (key, value) in release.configVars where environment[key] == nil { environment[key] = value }
        for (key, value) in try configArguments.resolve(environment: invocation.environment) {
            environment[key] = value
        }
        log.step("Starting \(process): \(command)")
        log.detail("HOME=\(home) PORT=\(port) DYNO=\(process).1")
        let result = try Spawner.run(
            Command(
                "bash", ["-c", Self.launchScript(home: home, command: command)], in: home, environment: environment,
                stdout: .inherit, stderr: .inherit))
        log.step("\(process) ended with \(result.termination)")
        return result.termination.exitCode
    }

    /// A build directory (it has a release next to it), or an app whose last build is known.
    private func buildDirectory(for directory: String) throws -> String {
        if Files.exists(LocalState.releaseSidecar(for: directory)) { return directory }
        let pointer = LocalState.lastBuildPointer(
            LocalState.appDirectory(for: directory, environment: invocation.environment))
        if let last = try? Files.read(pointer).trimmingCharacters("\n"), Files.isDirectory(last) {
            log.step("Using the last build of \(directory): \(last)")
            return last
        }
        return directory
    }

    /// What a dyno starts with: HOME, PORT, DYNO, plus this shell's PATH and LANG (the tools the
    /// process needs besides its own come from there, as from the stack image on Heroku).
    func dynoEnvironment(home: String) -> [String: String] {
        let outer = invocation.environment
        var env: [String: String] = [:]
        env["HOME"] = home
        env["PORT"] = String(port)
        env["DYNO"] = process + ".1"
        env["PATH"] = outer["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        env["LANG"] = outer["LANG"].flatMap { $0.isEmpty ? nil : $0 } ?? "en_US.UTF-8"
        if let term = outer["TERM"] { env["TERM"] = term }
        return env
    }

    /// `.profile.d/*.sh` in byte order, then `.profile`, then the command, all in one bash, as
    /// Heroku's dyno launcher does.
    static func launchScript(home: String, command: String) -> String {
        var lines: [String] = []
        let profileD = home + "/.profile.d"
        for name in Files.list(profileD).sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) })
        where name.hasSuffix(".sh") {
            lines.append(". \(BuildEnvironment.shellQuoted(profileD + "/" + name))")
        }
        lines.append("if [ -f \"$HOME/.profile\" ]; then . \"$HOME/.profile\"; fi")
        lines.append(command)
        return lines.joined(separator: "\n") + "\n"
    }
}
