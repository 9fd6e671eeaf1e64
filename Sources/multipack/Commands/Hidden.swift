import ArgumentParser
import MultipackKit

/// For benchmarks and debugging: the in-process extraction a fetch uses, on one archive.
struct ExtractCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extract", abstract: "Extracts a .tar, .tar.gz or .tar.xz safely.", shouldDisplay: false)
    @Argument(help: "The archive.") var archive: String
    @Argument(help: "The directory to extract into.") var destination: String

    func run() throws {
        try perform { _ in
            try extractArchive(atPath: archive, into: destination)
        }
    }
}

/// For the benchmark: packs a directory as a slug.
struct PackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pack", shouldDisplay: false)
    @Argument(help: "The directory to pack.") var directory: String
    @Argument(help: "The slug to write (.tgz).") var output: String

    func run() throws {
        try perform { _ in _ = try Slug.pack(directory, to: output) }
    }
}

/// A local build's stages, started by `multipack build` inside the build's namespace.
struct StagesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stages", shouldDisplay: false)
    @Argument(help: "The job multipack build gives it (JSON).") var job: String

    func run() throws {
        try perform { invocation in try StagesJob.run(json: job, invocation: invocation) }
    }
}

/// `multipack run`'s processes inside the dyno's namespace: several types together, or a one-off
/// command with a terminal of its own there.
struct DynoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "dyno", shouldDisplay: false)
    @Argument(help: "The job file multipack run gives it.") var job: String

    func run() throws {
        try perform { invocation in
            let code = try DynoJob.run(file: job, invocation: invocation)
            if code != 0 { throw MultipackError.printedBefore(exitCode: code, headline: nil) }
        }
    }
}
