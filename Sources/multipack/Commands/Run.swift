import ArgumentParser
import MultipackKit

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Starts a process of a build or slug as a Heroku dyno would.")
    @Argument(help: "A slug, a build directory, or an app directory (its last build).") var target: String
    @Argument(help: "The process type (web, worker, …).") var process: String
    @OptionGroup var config: ConfigVarOptions
    @Option(help: "PORT for the process.") var port = 5000

    func run() throws {
        SignalForwarding.install()
        let invocation = Invocation.current()
        var localRun = LocalRun(target: target, process: process, invocation: invocation)
        localRun.configArguments = config.arguments
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
