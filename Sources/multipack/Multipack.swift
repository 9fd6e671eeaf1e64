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
            CacheCommand.self, LockCommand.self, PackageCommand.self, PackCommand.self, ExtractCommand.self,
            StagesCommand.self,
        ])

    /// argument-parser's own entry, except that a usage error exits 2 (SPEC §11), not its 64.
    static func main() {
        let environment = ProcessInfo.processInfo.environment
        if let problem = ShimProtocol.problem(environment, version: MultipackVersion.current) {
            Invocation.current().log.failure(problem)
            // bin/report never fails, whatever it meets (SPEC §3).
            Glibc.exit(CommandLine.arguments.dropFirst().first == "report" ? 0 : 1)
        }
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

/// Runs a verb: prints the ` !     ` block for any failure and decides the exit code, once:
/// 128 + N after stop signal N, whatever the stage made of it (SPEC §11).
func perform(_ body: (Invocation) throws -> Void) throws {
    SignalForwarding.install()
    let invocation = Invocation.current()
    var code: Int32 = 0
    do {
        try body(invocation)
    } catch let exit as ExitCode {
        code = exit.rawValue
    } catch {
        invocation.log.failure(error)
        ErrorReport.record(error, environment: invocation.environment)
        code = ErrorReport.exitCode(for: error)
    }
    code = SignalForwarding.exitCode(otherwise: code)
    if code != 0 { throw ExitCode(code) }
}

/// Runs a verb that returns its own exit code (its failures printed by `perform`).
func performReturningCode(_ body: (Invocation) throws -> Int32) throws {
    try perform { invocation in
        let code = try body(invocation)
        if code != 0 { throw ExitCode(code) }
    }
}
