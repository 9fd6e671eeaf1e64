import ArgumentParser
import MultipackKit

struct StackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stack",
        abstract: "Manages the Heroku stack images local builds run on, pulled without Docker.",
        subcommands: [StackPull.self, StackList.self, StackPrune.self])
}

struct StackPull: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull",
        abstract: "Pulls and unpacks stack images into the cache every app shares (default: heroku/heroku:24-build).")
    @Argument(help: "Images as [HOST[:PORT]/]NAME[:TAG|@sha256:DIGEST].") var references: [String] = []
    @Option(help: "Also pull this Heroku stack's build and run images (heroku-22, heroku-24).") var stack: String?

    func run() throws {
        try perform { invocation in
            try StackPullCommand(references: references, stack: stack, invocation: invocation).run()
        }
    }
}

struct StackList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "Lists the stack images in the cache: name, digest, size, last use.")

    func run() throws {
        try perform { invocation in try StackListCommand(invocation: invocation).run() }
    }
}

struct StackPrune: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Removes the stack images no name points to any more, and what killed pulls left.")
    @Flag(help: "Remove every stack image.") var all = false
    @Flag(help: "Also remove the downloaded layers of the images kept (their unpacked roots stay).") var layers = false

    func run() throws {
        try perform { invocation in try StackPruneCommand(all: all, layers: layers, invocation: invocation).run() }
    }
}
