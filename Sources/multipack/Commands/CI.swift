import ArgumentParser
import MultipackKit

struct CICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ci",
        abstract:
            "Runs Heroku CI locally: test-compile, app.json's test-setup, then its test script or the buildpacks' bin/test, with CI=true."
    )
    @OptionGroup var arguments: LocalBuildArguments

    func run() throws {
        try perform { invocation in
            try AppBuild(app: arguments.appDir, options: try arguments.options(), invocation: invocation, mode: .ci)
                .run()
        }
    }
}
