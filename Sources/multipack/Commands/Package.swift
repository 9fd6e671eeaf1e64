import ArgumentParser
import MultipackKit

struct PackageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "package",
        abstract: "Writes the buildpack archive: the shims, buildpack.toml and a static release binary under vendor/.")
    @Option(help: "The archive to write (.tgz).") var output: String
    @Option(help: "Also write the stripped binary here (the release asset the shims download).") var binary: String?
    @Option(help: "The multipack checkout to package.") var source: String = "."
    @Option(help: "SwiftPM's build directory for the release build (default: SOURCE/.build-package).")
    var scratchPath: String?
    @Option(
        name: .customLong("release"),
        help: ArgumentHelp(
            "Package release VERSION: stamped into the binary and written into the archive's buildpack.toml (default: buildpack.toml's version).",
            valueName: "VERSION"))
    var releaseVersion: String?

    func run() throws {
        try perform { invocation in
            var packager = Packager(sourceDir: source, output: output, invocation: invocation)
            packager.binaryOutput = binary
            if let scratchPath { packager.scratchPath = scratchPath }
            packager.version = releaseVersion
            let result = try packager.run()
            print("sha256_\(result.architecture) = \"\(result.binarySHA256)\"")
        }
    }
}
