import ArgumentParser
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
            CacheCommand.self, LockCommand.self, PackageCommand.self, PackCommand.self, ExtractCommand.self,
            StagesCommand.self, DynoCommand.self,
        ])

    /// argument-parser's own entry, except that a usage error exits 2 (SPEC §11), not its 64.
    static func main() {
        do {
            var command = try shimCommand(Array(CommandLine.arguments.dropFirst())) ?? parseAsRoot()
            try command.run()
        } catch {
            guard exitCode(for: error) == .validationFailure else { exit(withError: error) }
            let message = fullMessage(for: error)
            Log.writeToDescriptor(message.hasSuffix("\n") ? message : message + "\n", 2)
            Glibc.exit(2)
        }
    }
}

extension Multipack {
    /// A Buildpack API verb as the shims call it, several times per build: directories only. It
    /// skips argument-parser's reflection over every command (~2 ms a call); anything else, an
    /// option or a missing argument included, is left to the parser.
    static func shimCommand(_ arguments: [String]) -> (any ParsableCommand)? {
        guard let verb = arguments.first else { return nil }
        let paths = Array(arguments.dropFirst())
        guard paths.allSatisfy({ !$0.isEmpty && !$0.hasPrefix("-") }) else { return nil }
        switch (verb, paths.count) {
        case ("detect", 1):
            var command = DetectCommand()
            command.buildDir = paths[0]
            return command
        case ("compile", 3):
            var command = CompileCommand()
            (command.buildDir, command.cacheDir, command.envDir) = (paths[0], paths[1], paths[2])
            return command
        case ("release", 1):
            var command = ReleaseCommand()
            command.buildDir = paths[0]
            return command
        case ("report", 1...3):
            var command = ReportCommand()
            command.buildDir = paths[0]
            command.cacheDir = paths.count > 1 ? paths[1] : nil
            command.envDir = paths.count > 2 ? paths[2] : nil
            return command
        default:
            return nil
        }
    }
}

/// Runs a verb: prints the ` !     ` block for any failure and decides the exit code, once, from
/// the failure's kind (SPEC §11: 2 usage, 1 build, 128 + N stopped by signal N). `passesOnExit`:
/// the command stands in for a process whose exit code is its own, a stop included (`run`).
func perform(passesOnExit: Bool = false, _ body: (Invocation) throws -> Void) throws {
    StopToken.installSignalHandlers()
    Spawner.becomeSubreaper()
    let invocation = Invocation.current()
    do {
        try body(invocation)
        // A stop that came after the last stage still means the command did not finish.
        if !passesOnExit { try invocation.stop.check() }
    } catch let exit as ExitCode {
        throw exit
    } catch {
        let failure = MultipackError(error)
        if !failure.printed {
            invocation.log.failure(failure)
            failure.record(environment: invocation.environment)
        }
        throw ExitCode(failure.exitCode)
    }
}
