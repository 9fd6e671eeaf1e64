import ArgumentParser
import MultipackKit

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Starts a process type, or a one-off command, of a build as a Heroku dyno would.",
        usage: "multipack run <slug-or-app> [<type>] [--env K=V …] [--port N] [-- <command> …]")
    @Argument(help: "A slug, or an app's directory (its last build).") var target: String
    @Argument(help: "The process type (web, worker, …); default web.") var process: String?
    @OptionGroup var config: ConfigVarOptions
    @Option(help: "PORT for the process.") var port = 5000
    @Argument(parsing: .postTerminator, help: "A one-off command (after --), instead of a process type.")
    var command: [String] = []

    func run() throws {
        SignalForwarding.install()
        let invocation = Invocation.current()
        var localRun = LocalRun(target: target, process: process, invocation: invocation)
        localRun.command = command
        localRun.configArguments = config.arguments
        localRun.port = port
        var code: Int32
        do {
            // The process's own exit code, also when a forwarded signal made it exit.
            code = try localRun.run()
        } catch {
            invocation.log.failure(error)
            code = ErrorReport.exitCode(for: error)
        }
        // Stopped by signal N, run ends as a shell reports it: 128 + N (SPEC §11).
        code = SignalForwarding.exitCode(otherwise: code)
        if code != 0 { throw ExitCode(code) }
    }
}
