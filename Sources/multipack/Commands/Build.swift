import ArgumentParser
import MultipackKit

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
