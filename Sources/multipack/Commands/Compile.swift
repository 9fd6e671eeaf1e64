import ArgumentParser
import MultipackKit

struct CompileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compile", abstract: "Fetches and runs every child buildpack.")
    @Argument var buildDir: String
    @Argument var cacheDir: String
    @Argument var envDir: String

    func run() throws {
        try perform { invocation in
            try Compile(dirs: BuildDirectories(build: buildDir, cache: cacheDir, env: envDir), invocation: invocation)
                .run()
        }
    }
}

struct TestCompileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test-compile", abstract: "As compile, with each child's bin/test-compile where it has one.")
    @Argument var buildDir: String
    @Argument var cacheDir: String
    @Argument var envDir: String

    func run() throws {
        try perform { invocation in
            try Compile(
                dirs: BuildDirectories(build: buildDir, cache: cacheDir, env: envDir), invocation: invocation,
                testCompile: true
            ).run()
        }
    }
}
