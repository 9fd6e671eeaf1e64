import ArgumentParser
import MultipackKit

struct CacheCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache", abstract: "Manages the caches of local builds.", subcommands: [CachePurgeCommand.self])
}

struct CachePurgeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "purge", abstract: "Empties an app's local build cache, or every app's.")
    @Argument(help: "The app's directory, or its repository's GIT_URL: its state and mirror (default: every app).")
    var appDir: String?

    func run() throws {
        try perform { invocation in try CachePurge(appDir: appDir, invocation: invocation).run() }
    }
}
