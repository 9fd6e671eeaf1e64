import ArgumentParser
import MultipackKit

struct TestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test", abstract: "Runs each child's bin/test, in order.")
    @Argument(help: "The app's directory (BUILD_DIR) test-compile built.") var buildDir: String
    @Argument(help: "The directory of config vars, one file per variable (ENV_DIR).") var envDir: String

    func run() throws {
        try perform { invocation in
            try TestVerb(buildDir: buildDir, envDir: envDir, invocation: invocation).run()
        }
    }
}
