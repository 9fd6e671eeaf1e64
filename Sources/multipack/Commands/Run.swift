import ArgumentParser
import MultipackKit

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Starts a process type, or a one-off command, of a build as a Heroku dyno would.",
        usage:
            "multipack run <slug-or-app> [<type>] [--env K=V …] [--port N] [--stack-image REF | --stack-root DIR] [-- <command> …]"
    )
    @Argument(help: "A slug, or an app's directory (its last build).") var target: String
    @Argument(help: "The process type (web, worker, …); default web.") var process: String?
    @OptionGroup var config: ConfigVarOptions
    @Option(help: "PORT for the process.") var port = 5000
    @Option(
        help: ArgumentHelp(
            "The stack whose run image the process runs on (default: the one the app was built for; heroku-24 for a slug).",
            valueName: "NAME"))
    var stack: String?
    @OptionGroup var root: StackRootOptions
    @Argument(parsing: .postTerminator, help: "A one-off command (after --), instead of a process type.")
    var command: [String] = []

    func run() throws {
        // The process's own exit code; 128 + N once stop signal N came, as a shell reports it
        // (SPEC §11).
        try perform { invocation in
            var localRun = LocalRun(target: target, process: process, invocation: invocation)
            localRun.command = command
            localRun.configArguments = config.arguments
            localRun.port = port
            localRun.stack = stack
            localRun.stackChoice = root.choice
            let code = try localRun.run()
            if code != 0 { throw MultipackError.printedBefore(exitCode: code, headline: nil) }
        }
    }
}
