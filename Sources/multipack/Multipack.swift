import ArgumentParser
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
            CacheCommand.self, PackageCommand.self, PackCommand.self, ExtractCommand.self,
        ])
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
