import ArgumentParser
import MultipackKit

struct DetectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detect", abstract: "Prints Multipack when the app has a .buildpacks list.")
    @Argument(help: "The app's directory (BUILD_DIR).") var buildDir: String

    func run() throws {
        do {
            print(try Detect.run(buildDir: buildDir))
        } catch {
            // Detect's reason goes to stderr, and any failure is "not this buildpack" (exit 1).
            Invocation.current().log.failure(error)
            throw ExitCode(1)
        }
    }
}
