import ArgumentParser
import MultipackKit

/// Config vars on the command line, for `build`, `ci` and `run`.
struct ConfigVarOptions: ParsableArguments {
    @Option(
        name: [.customShort("e"), .customLong("env")],
        help: ArgumentHelp(
            "A config var (repeatable): NAME=VALUE, or NAME to pass NAME's value from your environment.",
            valueName: "NAME[=VALUE]"))
    var env: [String] = []
    @Option(
        name: .customLong("env-file"),
        help: ArgumentHelp(
            "Config vars from a dotenv file (repeatable: a later file wins a name; --env wins over all).",
            valueName: "FILE"))
    var envFiles: [String] = []

    var arguments: ConfigVarArguments { ConfigVarArguments(pairs: env, envFiles: envFiles) }
}

/// `--mount HOST:PATH[:ro]`, for `build`, `ci` and `run`.
struct MountOptions: ParsableArguments {
    @Option(
        name: .customLong("mount"),
        help: ArgumentHelp(
            "Bind a directory of yours at PATH inside (repeatable; :ro for read-only): a source cache, an output directory. Files written under /app stay inside.",
            valueName: "HOST_DIR:PATH[:ro]"))
    var mounts: [String] = []

    /// Each mount checked: a usage error (exit 2) before anything runs.
    func parsed() throws -> [Mount] {
        let parsed = try mounts.map { text throws(MultipackError) in try Mount.parse(text) }
        try Mount.checkDistinct(parsed)
        return parsed
    }
}

/// What `build`, `ci` and `run` stand on, when not the stack's own image.
struct StackRootOptions: ParsableArguments {
    @Option(
        name: .customLong("stack-image"),
        help: ArgumentHelp(
            "Run on this image instead of the stack's (heroku/heroku:24-build for build, ci and a run with no app; heroku/heroku:24 for a run of an app or slug), pulled without Docker; NAME@sha256:… pins one.",
            valueName: "[HOST[:PORT]/]NAME[:TAG|@sha256:DIGEST]"))
    var stackImage: String?
    @Option(
        name: .customLong("stack-root"),
        help: ArgumentHelp(
            "Run on this root filesystem instead of the stack's image: a directory, or a tarball of one; / is this machine's own system.",
            valueName: "DIR|TARBALL"))
    var stackRoot: String?

    var choice: StackChoice {
        var choice = StackChoice()
        choice.image = stackImage
        choice.root = stackRoot
        return choice
    }
}

/// Options `build` and `ci` share.
struct LocalBuildArguments: ParsableArguments {
    @Argument(help: "The app's directory, or its git repository: GIT_URL[#REF] (a branch, tag or commit).")
    var appDir: String
    @Option(
        name: .customLong("buildpack"),
        help: ArgumentHelp(
            "A buildpack to run as Heroku's own list would (repeatable, in order): a URL, a registry name, or a directory (a relative path that exists here is that directory). Without it, multipack runs the app's .buildpacks.",
            valueName: "URL|DIR"))
    var buildpacks: [String] = []
    @OptionGroup var config: ConfigVarOptions
    @Option(
        help: ArgumentHelp(
            "The cache directory (default: a per-app directory under ~/.cache/multipack/apps).", valueName: "DIR"))
    var cache: String?
    @Flag(name: .customLong("no-cache"), help: "Build with a throwaway cache.") var noCache = false
    @Option(
        help: ArgumentHelp(
            "The stack the build is told it runs on (STACK): \(LocalBuildOptions.stacks.joined(separator: ", ")).",
            valueName: "NAME"))
    var stack = "heroku-24"
    @OptionGroup var root: StackRootOptions
    @Option(
        help: ArgumentHelp(
            "Where to write the slug (default for build: in the app's state directory; ci writes one only when asked).",
            valueName: "FILE"))
    var slug: String?
    @Option(name: .customLong("slug-limit"), help: ArgumentHelp("Fail above this slug size.", valueName: "MB"))
    var slugLimit = 500
    @Option(
        name: .customLong("pass-env"),
        help: ArgumentHelp(
            "Hand this variable of your environment to the buildpacks' process environment (repeatable): a runtime or package-index mirror URL a buildpack reads only from its environment. Nothing else of your environment reaches them.",
            valueName: "NAME"))
    var passEnv: [String] = []
    @Flag(help: "Print one JSON summary on stdout; the log goes to stderr.") var json = false
    @OptionGroup var mount: MountOptions

    func options() throws -> LocalBuildOptions {
        var options = LocalBuildOptions(appDir: appDir)
        options.mounts = try mount.parsed()
        options.buildpacks = buildpacks
        options.configArguments = config.arguments
        options.cacheDir = cache
        options.noCache = noCache
        options.stack = stack
        options.stackImage = root.stackImage
        options.stackRoot = root.stackRoot
        options.slugPath = slug
        options.slugLimitMB = slugLimit
        options.json = json
        options.passEnv = passEnv
        return options
    }
}

struct BuildCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build", abstract: "Builds an app locally as Heroku's slug compiler would, and writes its slug.")
    @OptionGroup var arguments: LocalBuildArguments
    @Option(
        name: .customLong("slug-dir"),
        help: ArgumentHelp(
            "File the slug by commit: DIR/<app>/<commit>.tar.gz, .release.yml and .json (a commit filed already with the same inputs is not built again).",
            valueName: "DIR"))
    var slugDirectory: String?
    @Flag(help: "With --slug-dir: build a commit whose slug is filed already.") var force = false

    func run() throws {
        try perform { invocation in
            var build = AppBuild(app: arguments.appDir, options: try arguments.options(), invocation: invocation)
            build.slugDirectory = slugDirectory
            build.force = force
            try build.run()
        }
    }
}
