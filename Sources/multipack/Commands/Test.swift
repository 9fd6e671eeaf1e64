import ArgumentParser
import MultipackKit

struct TestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test", abstract: "Runs each child's bin/test, in order.")
    @Argument var buildDir: String
    @Argument var envDir: String

    func run() throws {
        try perform { invocation in
            try TestVerb(buildDir: buildDir, envDir: envDir, invocation: invocation).run()
        }
    }
}
