import ArgumentParser
import MultipackKit

struct CompileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compile", abstract: "Fetches and runs every child buildpack.")
    @Argument(help: "The app's directory, built in place (BUILD_DIR).") var buildDir: String
    @Argument(help: "The directory kept between builds (CACHE_DIR).") var cacheDir: String
    @Argument(help: "The directory of config vars, one file per variable (ENV_DIR).") var envDir: String

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
    @Argument(help: "The app's directory, built in place (BUILD_DIR).") var buildDir: String
    @Argument(help: "The directory kept between builds (CACHE_DIR).") var cacheDir: String
    @Argument(help: "The directory of config vars, one file per variable (ENV_DIR).") var envDir: String

    func run() throws {
        try perform { invocation in
            try Compile(
                dirs: BuildDirectories(build: buildDir, cache: cacheDir, env: envDir), invocation: invocation,
                testCompile: true
            ).run()
        }
    }
}
