import FoundationEssentials
import Glibc

/// How multipack's messages name multipack, so that every `Try it:` or hint line works as printed
/// (SPEC §16): `multipack` when PATH finds this very binary, else the path it was started with.
public enum CommandName {
    public static let current: String = resolve(
        argument0: CommandLine.arguments.first ?? "", environment: ProcessInfo.processInfo.environment)

    static func resolve(argument0: String, environment: [String: String]) -> String {
        // A verb a local build started, inside its namespace: named as the user started the build.
        if let passed = environment[HiddenVariable.commandName], !passed.isEmpty { return passed }
        // Started by the bin/ shims (on Heroku): the user runs multipack on their own machine.
        if ShimProtocol.isShim(environment) { return "multipack" }
        let me = LocalBuild.executablePath()
        if let found = Packager.which("multipack", environment), sameFile(found, me) { return "multipack" }
        let path = argument0.contains("/") ? argument0 : me
        return Command(path, [], environment: [:]).traceLine
    }

    static func sameFile(_ a: String, _ b: String) -> Bool {
        var first = stat()
        var second = stat()
        guard stat(a, &first) == 0, stat(b, &second) == 0 else { return false }
        return first.st_dev == second.st_dev && first.st_ino == second.st_ino
    }

    /// A command line to print: multipack's name, then the arguments quoted for a shell.
    public static func line(_ arguments: [String]) -> String {
        ([current] + arguments.map { Command($0, [], environment: [:]).traceLine }).joined(separator: " ")
    }
}
