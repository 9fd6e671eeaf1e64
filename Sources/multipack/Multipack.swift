import ArgumentParser
import MultipackKit

@main
struct Multipack: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "multipack",
        abstract: "Runs the buildpacks listed in an app's .buildpacks, one after another, as one Heroku buildpack.",
        version: "multipack \(MultipackVersion.current)",
        subcommands: [
            DetectCommand.self, CompileCommand.self, ReleaseCommand.self, TestCompileCommand.self,
            TestCommand.self, ReportCommand.self, BuildCommand.self, PackageCommand.self,
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

struct PackageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "package",
        abstract: "Writes the buildpack archive: the shims, buildpack.toml and a static release binary under vendor/.")
    @Option(help: "The archive to write (.tgz).") var output: String
    @Option(help: "Also write the stripped binary here (the release asset the shims download).") var binary: String?
    @Option(help: "The multipack checkout to package.") var source: String = "."
    @Option(help: "SwiftPM's build directory for the release build (default: SOURCE/.build-package).")
    var scratchPath: String?

    func run() throws {
        try perform { invocation in
            var packager = Packager(sourceDir: source, output: output, invocation: invocation)
            packager.binaryOutput = binary
            if let scratchPath { packager.scratchPath = scratchPath }
            let result = try packager.run()
            print("sha256_\(result.architecture) = \"\(result.binarySHA256)\"")
        }
    }
}
