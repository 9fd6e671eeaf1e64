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
            TestCommand.self, ReportCommand.self, BuildCommand.self, RunCommand.self, CICommand.self,
            CacheCommand.self, PackageCommand.self, PackCommand.self, ExtractCommand.self,
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
    static let configuration = CommandConfiguration(
        commandName: "detect", abstract: "Prints Multipack when the app has a .buildpacks list.")
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
    static let configuration = CommandConfiguration(
        commandName: "compile", abstract: "Fetches and runs every child buildpack.")
    @Argument var buildDir: String
    @Argument var cacheDir: String
    @Argument var envDir: String

    func run() throws {
        try perform { invocation in
            try Compile(dirs: BuildDirectories(build: buildDir, cache: cacheDir, env: envDir), invocation: invocation)
                .run()
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
            try Compile(
                dirs: BuildDirectories(build: buildDir, cache: cacheDir, env: envDir), invocation: invocation,
                testCompile: true
            ).run()
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
    static let configuration = CommandConfiguration(
        commandName: "test", abstract: "Runs each child's bin/test, in order.")
    @Argument var buildDir: String
    @Argument var envDir: String

    func run() throws {
        try perform { invocation in
            try TestVerb(buildDir: buildDir, envDir: envDir, invocation: invocation).run()
        }
    }
}

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report", abstract: "Prints flat YAML about the last build.")
    @Argument var buildDir: String
    @Argument var cacheDir: String?
    @Argument var envDir: String?

    func run() {
        print(Report.run(buildpackDir: Invocation.current().buildpackDir), terminator: "")
    }
}

/// Options `build` and `ci` share.
struct LocalBuildArguments: ParsableArguments {
    @Argument(help: "The app's directory.") var appDir: String
    @Option(
        name: .customLong("buildpack"),
        help:
            "A buildpack to run as Heroku's own list would (repeatable, in order). Without it, multipack runs the app's .buildpacks."
    )
    var buildpacks: [String] = []
    @Option(name: .customLong("env"), help: "A config var, NAME=VALUE (repeatable).") var env: [String] = []
    @Option(name: .customLong("env-file"), help: "Config vars from a dotenv file (--env wins over it).") var envFile:
        String?
    @Option(help: "The cache directory (default: a per-app directory under ~/.cache/multipack/apps).") var cache:
        String?
    @Flag(name: .customLong("no-cache"), help: "Build with a throwaway cache.") var noCache = false
    @Option(help: "The stack the build is told it runs on (STACK).") var stack = "heroku-24"
    @Flag(help: "Print one JSON summary on stdout; the log goes to stderr.") var json = false

    func options() -> LocalBuildOptions {
        var options = LocalBuildOptions(appDir: appDir)
        options.buildpacks = buildpacks
        options.configArguments = ConfigVarArguments(pairs: env, envFile: envFile)
        options.cacheDir = cache
        options.noCache = noCache
        options.stack = stack
        options.json = json
        return options
    }
}

/// Runs a verb that returns its own exit code (its failures printed by `perform`).
func performReturningCode(_ body: (Invocation) throws -> Int32) throws {
    var code: Int32 = 0
    try perform { invocation in code = try body(invocation) }
    if code != 0 { throw ExitCode(code) }
}

struct BuildCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build", abstract: "Builds an app locally as Heroku's slug compiler would, and writes its slug.")
    @OptionGroup var arguments: LocalBuildArguments
    @Option(help: "Where to write the slug (default: next to the build directory).") var slug: String?
    @Option(name: .customLong("slug-limit"), help: "Fail above this slug size, in MB.") var slugLimit = 500

    func run() throws {
        try performReturningCode { invocation in
            var options = arguments.options()
            options.slugPath = slug
            options.slugLimitMB = slugLimit
            return LocalBuild(options: options, invocation: invocation).run()
        }
    }
}

struct CICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ci", abstract: "Runs Heroku CI locally: test-compile, then the tests, with CI=true.")
    @OptionGroup var arguments: LocalBuildArguments

    func run() throws {
        try performReturningCode { invocation in
            LocalBuild(options: arguments.options(), invocation: invocation, mode: .ci).run()
        }
    }
}

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Starts a process of a build or slug as a Heroku dyno would.")
    @Argument(help: "A slug, a build directory, or an app directory (its last build).") var target: String
    @Argument(help: "The process type (web, worker, …).") var process: String
    @Option(name: .customLong("env"), help: "A config var, NAME=VALUE (repeatable).") var env: [String] = []
    @Option(name: .customLong("env-file"), help: "Config vars from a dotenv file.") var envFile: String?
    @Option(help: "PORT for the process.") var port = 5000

    func run() throws {
        SignalForwarding.install()
        let invocation = Invocation.current()
        var localRun = LocalRun(target: target, process: process, invocation: invocation)
        localRun.configArguments = ConfigVarArguments(pairs: env, envFile: envFile)
        localRun.port = port
        let code: Int32
        do {
            // The process's own exit code, also when a forwarded signal made it exit.
            code = try localRun.run()
        } catch {
            invocation.log.failure(error)
            throw ExitCode(ErrorReport.exitCode(for: error))
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

struct CacheCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache", abstract: "Manages the caches of local builds.", subcommands: [CachePurgeCommand.self])
}

struct CachePurgeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "purge", abstract: "Empties an app's local build cache, or every app's.")
    @Argument(help: "The app's directory (default: every app).") var appDir: String?

    func run() throws {
        try perform { invocation in try CachePurge(appDir: appDir, invocation: invocation).run() }
    }
}

/// For the benchmark: packs a directory as a slug.
struct PackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pack", shouldDisplay: false)
    @Argument var directory: String
    @Argument var output: String

    func run() throws {
        try perform { _ in _ = try Slug.pack(directory, to: output) }
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
