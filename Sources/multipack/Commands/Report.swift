import ArgumentParser
import MultipackKit

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report", abstract: "Prints flat YAML about the last build.")
    @Argument(help: "The app's directory (BUILD_DIR).") var buildDir: String
    @Argument(help: "The cache directory (CACHE_DIR; not read).") var cacheDir: String?
    @Argument(help: "The config vars directory (ENV_DIR; not read).") var envDir: String?

    func run() {
        print(Report.run(buildpackDir: Invocation.current().buildpackDir, buildDir: buildDir), terminator: "")
    }
}
