import ArgumentParser
import MultipackKit

@main
struct Multipack: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "multipack",
        abstract: "Runs the buildpacks listed in an app's .buildpacks, one after another, as one Heroku buildpack.",
        version: MultipackVersion.current,
        subcommands: [
            DetectCommand.self, CompileCommand.self, ReleaseCommand.self, TestCompileCommand.self,
            TestCommand.self, ReportCommand.self, BuildCommand.self, ExtractCommand.self,
        ])
}

/// Runs a verb: prints the ` !     ` block for any failure and decides the exit code, once.
func perform(_ body: (Invocation) throws -> Void) throws {
    SignalForwarding.install()
    let invocation = Invocation.current()
    do {
        try body(invocation)
    } catch let exit as ExitCode {
        throw exit
    } catch {
        invocation.log.failure(error)
        throw ExitCode(ErrorReport.exitCode(for: error))
    }
    if SignalForwarding.stopSignal != nil { throw ExitCode(1) }
}

struct DetectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "detect", abstract: "Prints Multipack when the app has a .buildpacks list.")
    @Argument var buildDir: String

    func run() throws {
        do {
            print(try Detect.run(buildDir: buildDir))
        } catch {
            // Detect's reason goes to stderr, and any failure is "not this buildpack" (exit 1).
            Invocation.current().log.failure(error)
            throw ExitCode(1)
        }
    }
}

struct CompileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "compile", abstract: "Fetches and runs every child buildpack.")
    @Argument var buildDir: String
    @Argument var cacheDir: String
    @Argument var envDir: String

    func run() throws {
        try perform { invocation in
            try Compile(dirs: BuildDirectories(build: buildDir, cache: cacheDir, env: envDir), invocation: invocation).run()
        }
    }
}

struct TestCompileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test-compile", abstract: "As compile, with each child's bin/test-compile where it has one.")
    @Argument var buildDir: String
    @Argument var cacheDir: String
    @Argument var envDir: String

    func run() throws {
        try perform { invocation in
            try Compile(dirs: BuildDirectories(build: buildDir, cache: cacheDir, env: envDir), invocation: invocation, testCompile: true).run()
        }
    }
}

struct ReleaseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "release", abstract: "Prints the merged release YAML.")
    @Argument var buildDir: String

    func run() {
        print(ReleaseVerb.run(buildpackDir: Invocation.current().buildpackDir), terminator: "")
    }
}

struct TestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "test", abstract: "Runs each child's bin/test, in order.")
    @Argument var buildDir: String
    @Argument var envDir: String

    func run() throws {
        try perform { invocation in
            try TestVerb(buildDir: buildDir, envDir: envDir, invocation: invocation).run()
        }
    }
}

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "report", abstract: "Prints flat YAML about the last build.")
    @Argument var buildDir: String
    @Argument var cacheDir: String?
    @Argument var envDir: String?

    func run() {
        print(Report.run(buildpackDir: Invocation.current().buildpackDir), terminator: "")
    }
}

struct BuildCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build", abstract: "Builds an app locally as Heroku's slug compiler would.")
    @Argument(help: "The app's directory.") var appDir: String
    @Option(name: .customLong("env"), help: "A config var, K=V (repeatable).") var env: [String] = []
    @Option(help: "The cache directory (default: a per-app directory under ~/.cache/multipack).") var cache: String?

    func validate() throws {
        for pair in env where !pair.contains("=") || pair.hasPrefix("=") {
            throw ValidationError("--env takes K=V, but got `\(pair)`.")
        }
    }

    func run() throws {
        var code: Int32 = 0
        try perform { invocation in
            var build = LocalBuild(appDir: appDir, invocation: invocation)
            build.cacheDir = cache
            for pair in env {
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                build.configVars[String(parts[0])] = String(parts[1])
            }
            code = try build.run()
        }
        if code != 0 { throw ExitCode(code) }
    }
}

/// For benchmarks and debugging: the in-process extraction a fetch uses, on one archive.
struct ExtractCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extract", abstract: "Extracts a .tar, .tar.gz or .tar.xz safely.", shouldDisplay: false)
    @Argument var archive: String
    @Argument var destination: String

    func run() throws {
        try perform { _ in
            try extractArchive(atPath: archive, into: destination)
        }
    }
}
