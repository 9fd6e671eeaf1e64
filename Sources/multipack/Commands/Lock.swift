import ArgumentParser
import MultipackKit

struct LockCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lock",
        abstract: "Pins every buildpack of .buildpacks in .buildpacks.lock, which compile then follows.")
    @Argument(help: "The app's directory (default: the current directory).") var appDir = "."
    @Flag(help: "Exit 1, naming the lines, unless .buildpacks.lock is present and current.") var check = false
    @Option(
        name: .customLong("update"),
        help: "Resolve only this entry again, as .buildpacks writes it (repeatable); the others keep their pins.")
    var updates: [String] = []

    func validate() throws {
        if check && !updates.isEmpty { throw ValidationError("--check and --update do not go together.") }
    }

    func run() throws {
        try perform { invocation in
            let locker = Locker(appDir: appDir, invocation: invocation, updates: updates)
            if check { try locker.check() } else { try locker.write() }
        }
    }
}
