import ArgumentParser
import FoundationEssentials
import MultipackKit

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Prints flat YAML about an app's last local build (or, as bin/report, about the build compile made).")
    @Argument(help: "The app's directory (or BUILD_DIR, as bin/report gives it).") var buildDir: String
    @Argument(help: "CACHE_DIR, as bin/report gives it (not read).") var cacheDir: String?
    @Argument(help: "ENV_DIR, as bin/report gives it (not read).") var envDir: String?

    func run() throws {
        // bin/report (the shims, or the Buildpack API's three directories) never fails (SPEC §3).
        if cacheDir != nil || ShimProtocol.isShim(ProcessInfo.processInfo.environment) {
            print(Report.run(buildpackDir: Invocation.current().buildpackDir, buildDir: buildDir), terminator: "")
            return
        }
        try perform { invocation in
            print(try LocalReport.run(appDir: buildDir, environment: invocation.environment), terminator: "")
        }
    }
}
