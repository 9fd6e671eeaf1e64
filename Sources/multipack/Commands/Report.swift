import ArgumentParser
import MultipackKit

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report", abstract: "Prints flat YAML about the last build.")
    @Argument var buildDir: String
    @Argument var cacheDir: String?
    @Argument var envDir: String?

    func run() {
        print(Report.run(buildpackDir: Invocation.current().buildpackDir), terminator: "")
    }
}
