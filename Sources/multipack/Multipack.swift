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
            StagesCommand.self,
        ])

    /// argument-parser's own entry, except that a usage error exits 2 (SPEC §11), not its 64.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            guard exitCode(for: error) == .validationFailure else { exit(withError: error) }
            let message = fullMessage(for: error)
            Log.writeToDescriptor(message.hasSuffix("\n") ? message : message + "\n", 2)
            Glibc.exit(2)
        }
    }
}

/// Runs a verb: prints the ` !     ` block for any failure and decides the exit code, once.
func perform(_ body: (Invocation) throws -> Void) throws {
    SignalForwarding.install()
    let invocation = Invocation.current()
    do {
        try body(invocation)
    } catch let exit as ExitCode {
        throw exit
    } catch {
        invocation.log.failure(error)
        ErrorReport.record(error, environment: invocation.environment)
        throw ExitCode(ErrorReport.exitCode(for: error))
    }
    if SignalForwarding.stopSignal != nil { throw ExitCode(1) }
}

/// Runs a verb that returns its own exit code (its failures printed by `perform`).
func performReturningCode(_ body: (Invocation) throws -> Int32) throws {
    var code: Int32 = 0
    try perform { invocation in code = try body(invocation) }
    if code != 0 { throw ExitCode(code) }
}
