import ArgumentParser
import MultipackKit

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract:
            "Runs an app's process types together as heroku local does, one of them, or a one-off command, as a Heroku dyno would.",
        usage:
            "multipack run <slug-or-app> [<type> …] [-f PROCFILE] [-p PORT] [--env K=V …] [--grace S] [--stack NAME] [--stack-image REF | --stack-root DIR|TARBALL] [--mount DIR:PATH[:ro] …] [-- <command> …]\n       multipack run [--stack NAME] [--stack-image REF | --stack-root DIR|TARBALL] [--mount DIR:PATH[:ro] …] -- <command> …"
    )
    @Argument(
        help:
            "A slug, or an app's directory (its last build). None: the command after -- runs on the stack's build image with an empty /app."
    )
    var target: String?
    @Argument(
        help: ArgumentHelp(
            "Process types to run (web, worker, …); none: every type of the Procfile but release, together. After --: a one-off command instead.",
            valueName: "type"))
    var words: [String] = []
    @OptionGroup var config: ConfigVarOptions
    @Option(
        name: [.customShort("p"), .customLong("port")], help: "PORT of the first type; each next one gets 100 more.")
    var port = 5000
    @Option(name: [.customShort("f"), .customLong("procfile")], help: "Another Procfile than the app's.")
    var procfile: String?
    @Option(help: "Seconds between SIGTERM and SIGKILL when the processes are stopped (Heroku's 30).")
    var grace = 30
    @Option(
        help: ArgumentHelp(
            "The stack whose run image the processes run on (default: the one the app was built for; heroku-24 for a slug); with no app, whose build image.",
            valueName: "NAME"))
    var stack: String?
    @OptionGroup var root: StackRootOptions
    @OptionGroup var mount: MountOptions

    /// The one-off command is what followed the first `--` of the command line, which
    /// argument-parser is never given (see `Multipack.main`): `target` and `words` are what came
    /// before (no target: `multipack run -- make`, with no app).
    static func split(target: String?, words: [String], commandLine: [String]) -> (
        target: String?, processes: [String], command: [String]
    ) {
        guard let terminator = commandLine.firstIndex(of: "--") else { return (target, words, []) }
        return (target, words, Array(commandLine[(terminator + 1)...]))
    }

    func run() throws {
        // The processes' own exit code; 128 + N once stop signal N came, as a shell reports it
        // (SPEC §11).
        try perform { invocation in
            let (app, processes, command) = Self.split(
                target: target, words: words, commandLine: CommandLine.arguments)
            // `run APP --` says a one-off is coming: with none, nothing is guessed (not every type).
            if command.isEmpty, CommandLine.arguments.contains("--") {
                let example = CommandName.line(["run"] + (app.map { [$0] } ?? []) + ["--", "bash"])
                throw MultipackError.usage(
                    "-- is followed by no command.",
                    hint: "Give the one-off command after it (\(example))"
                        + (app == nil ? "." : ", or leave -- out to run the app's process types."))
            }
            var localRun = LocalRun(target: app, invocation: invocation)
            (localRun.processes, localRun.command) = (processes, command)
            localRun.mounts = try mount.parsed()

            localRun.configArguments = config.arguments
            localRun.port = port
            localRun.procfile = procfile
            localRun.graceSeconds = grace
            localRun.stack = stack
            localRun.stackChoice = root.choice
            let code = try localRun.run()
            if code != 0 { throw MultipackError.printedBefore(exitCode: code, headline: nil) }
        }
    }
}
