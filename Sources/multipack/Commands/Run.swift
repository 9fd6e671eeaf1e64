import ArgumentParser
import MultipackKit

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract:
            "Runs an app's process types together as heroku local does, one of them, or a one-off command, as a Heroku dyno would.",
        usage:
            "multipack run <slug-or-app> [<type> …] [-f PROCFILE] [-p PORT] [--env K=V …] [--grace S] [-- <command> …]")
    @Argument(help: "A slug, or an app's directory (its last build).") var target: String
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

    /// The one-off command is what followed the first `--` of the command line, which
    /// argument-parser is never given (see `Multipack.main`): `words` are the process types.
    static func split(_ words: [String], commandLine: [String]) -> (processes: [String], command: [String]) {
        guard let terminator = commandLine.firstIndex(of: "--") else { return (words, []) }
        return (words, Array(commandLine[(terminator + 1)...]))
    }

    func run() throws {
        // The processes' own exit code; 128 + N once stop signal N came, as a shell reports it
        // (SPEC §11).
        try perform { invocation in
            var localRun = LocalRun(target: target, invocation: invocation)
            (localRun.processes, localRun.command) = Self.split(words, commandLine: CommandLine.arguments)
            localRun.configArguments = config.arguments
            localRun.port = port
            localRun.procfile = procfile
            localRun.graceSeconds = grace
            let code = try localRun.run()
            if code != 0 { throw MultipackError.printedBefore(exitCode: code, headline: nil) }
        }
    }
}
