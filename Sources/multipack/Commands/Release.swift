import ArgumentParser
import MultipackKit

struct ReleaseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "release", abstract: "Prints the merged release YAML.")
    @Argument(help: "The app's directory (BUILD_DIR) compile built.") var buildDir: String

    func run() {
        print(ReleaseVerb.run(buildpackDir: Invocation.current().buildpackDir, buildDir: buildDir), terminator: "")
    }
}
