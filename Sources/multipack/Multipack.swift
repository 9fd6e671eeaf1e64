import ArgumentParser
import FoundationEssentials
import Glibc
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
            CacheCommand.self, StackCommand.self, LockCommand.self, PackageCommand.self, PackCommand.self,
            ExtractCommand.self, StagesCommand.self, DynoCommand.self,
        ])

    /// More than any command needs: 600 process types fill the ports from 5000.
    static let maxParsedWords = 1024

    /// argument-parser's own entry, except that a usage error exits 2 (SPEC §11), not its 64.
    static func main() {
        let environment = ProcessInfo.processInfo.environment
        if let problem = ShimProtocol.problem(environment, version: MultipackVersion.current) {
            Invocation.current().log.failure(problem)
            // bin/report never fails, whatever it meets (SPEC §3).
            Glibc.exit(CommandLine.arguments.dropFirst().first == "report" ? 0 : 1)
        }
        // argument-parser's time grows with the square of the words it is given (8,000 took 12 s):
        // a one-off command after `run`'s `--` is never given to it (RunCommand reads it from
        // CommandLine.arguments), and no command takes more than `maxParsedWords` words before.
        var arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "run", let terminator = arguments.firstIndex(of: "--") {
            arguments = Array(arguments[...terminator])
        }
        guard arguments.count <= maxParsedWords else {
            Log.writeToDescriptor(
                " !     multipack was given \(arguments.count) arguments; it takes at most \(maxParsedWords)"
                    + " (a one-off command after `run`'s -- as many as you like).\n"
                    + " !     Put config vars in a file (--env-file), or name fewer process types.\n", 2)
            Glibc.exit(2)
        }
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            guard exitCode(for: error) == .validationFailure else { exit(withError: error) }
            let message = fullMessage(for: error)
            Log.writeToDescriptor(message.hasSuffix("\n") ? message : message + "\n", 2)
            Glibc.exit(2)
        }
    }
}

/// Runs a verb: prints the ` !     ` block for any failure and decides the exit code, once, from
/// the failure's kind (SPEC §11: 2 usage, 1 build, 128 + N stopped by signal N): once a stop
/// signal came, 128 + N whatever the stage made of it, `run`'s process included.
func perform(_ body: (Invocation) throws -> Void) throws {
    StopToken.installSignalHandlers()
    Spawner.becomeSubreaper()
    let invocation = Invocation.current()
    var code: Int32 = 0
    do {
        try body(invocation)
    } catch let exit as ExitCode {
        code = exit.rawValue
    } catch {
        let failure = MultipackError(error)
        if !failure.printed {
            invocation.log.failure(failure)
            failure.record(environment: invocation.environment)
        }
        code = failure.exitCode
    }
    if let signal = invocation.stop.signal { code = 128 + signal }
    if code != 0 { throw ExitCode(code) }
}
