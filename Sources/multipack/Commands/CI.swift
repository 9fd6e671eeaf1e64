import ArgumentParser
import MultipackKit

struct CICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ci", abstract: "Runs Heroku CI locally: test-compile, then the tests, with CI=true.")
    @OptionGroup var arguments: LocalBuildArguments

    func run() throws {
        try performReturningCode { invocation in
            LocalBuild(options: arguments.options(), invocation: invocation, mode: .ci).run()
        }
    }
}
