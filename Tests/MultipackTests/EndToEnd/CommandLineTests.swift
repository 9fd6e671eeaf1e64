import Foundation
import Testing

@testable import MultipackKit

/// The command line a Heroku user expects (SPEC §4, §11, §12): relative paths, config vars,
/// stacks, exit code 2 for every usage error, help on every argument.
@Suite struct CommandLineTests {
    /// Where the registry would be if a path were read as a registry name: nobody listens, so a
    /// wrong reading fails at once instead of passing by accident.
    static let noRegistry = ["MULTIPACK_REGISTRY_URL": "http://127.0.0.1:9/registry"]

    @Test func aBareRelativePathNamingADirectoryIsThatDirectory() throws {
        let temp = try TempDir("barepath")
        try FileManager.default.createDirectory(atPath: temp.path + "/vendor", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Repo.fixtures + "/buildpacks/node", toPath: temp.path + "/vendor/bp")
        let entries = try BuildpackList.parse("vendor/bp\nheroku/python\nvendor/bp#v1\n", directory: temp.path)
        #expect(
            entries.map(\.reference) == [
                .directory(path: "./vendor/bp"), .registry(namespace: "heroku", name: "python"),
                .git(url: "./vendor/bp", ref: "v1"),
            ])
        // Without a directory to look in (or when it is not there), the name is a registry name.
        #expect(try BuildpackList.parse("vendor/bp\n").map(\.reference) == [.registry(namespace: "vendor", name: "bp")])
        #expect(
            try BuildpackList.parse("vendor/nope\n", directory: temp.path).map(\.reference) == [
                .registry(namespace: "vendor", name: "nope")
            ])
        // A deeper path is only ever a directory; one that does not exist is a bad line.
        try FileManager.default.createDirectory(atPath: temp.path + "/a/b/c", withIntermediateDirectories: true)
        #expect(
            try BuildpackList.parse("a/b/c\n", directory: temp.path).map(\.reference) == [.directory(path: "./a/b/c")])
        #expect(throws: BuildpackListError.self) { try BuildpackList.parse("a/b/x\n", directory: temp.path) }
    }

    @Test func buildpackFlagAndBuildpacksFileTakeExistingRelativeDirectories() throws {
        let world = try LocalWorld("relative")
        let app = try world.app(buildpacks: nil)
        try FileManager.default.createDirectory(
            atPath: world.temp.path + "/buildpacks", withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            atPath: world.buildpack("node"), toPath: world.temp.path + "/buildpacks/node")
        // --buildpack: relative to the current directory (the test runs multipack in the temp dir).
        let flag = try world.multipack(["build", app, "--buildpack", "buildpacks/node"], extra: Self.noRegistry)
        #expect(flag.status == 0, "\(flag.all)")
        #expect(flag.stdout.contains("Installing node (fixture)"), "\(flag.stdout)")
        #expect(!flag.all.contains("127.0.0.1:9"))

        // .buildpacks: relative to the app root.
        try FileManager.default.createDirectory(atPath: app + "/vendor", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: world.buildpack("node"), toPath: app + "/vendor/node")
        try "vendor/node\n".write(toFile: app + "/.buildpacks", atomically: true, encoding: .utf8)
        let list = try world.multipack(["build", app], extra: Self.noRegistry)
        #expect(list.status == 0, "\(list.all)")
        #expect(!list.all.contains("127.0.0.1:9"))
    }

    /// `--env-file <(…)`: a file the user names may be a pipe, read to its end.
    @Test func anEnvFileMayBeAPipe() throws {
        let world = try LocalWorld("envpipe")
        let app = try world.app(buildpacks: nil)
        let dump = try dumpBuildpack(in: world.temp)
        let build = try Shell.run(
            "bash",
            [
                "-c", "\"$0\" build \"$1\" --buildpack \"$2\" --env-file <(echo FROM_PIPE=piped)", Repo.binary, app,
                dump,
            ],
            in: world.temp.path, environment: world.environment)
        #expect(build.status == 0, "\(build.all)")
        let buildDir = try #require(
            build.stdout.split(separator: "\n").first { $0.hasPrefix("=====> Build directory: ") }?.split(
                separator: " "
            ).last)
        #expect(try String(contentsOfFile: "\(buildDir)/config.txt", encoding: .utf8).contains("FROM_PIPE=[piped]"))
    }

    @Test func configVarsFromRepeatedEnvFilesEnvAndTheCallersEnvironment() throws {
        let world = try LocalWorld("envflags")
        let app = try world.app(buildpacks: nil)
        let dump = try dumpBuildpack(in: world.temp)
        try world.temp.write("one.env", "A=one\nB=one\nC=one\n")
        try world.temp.write("two.env", "B=two\nC=two\n")
        let build = try world.multipack(
            [
                "build", app, "--buildpack", dump, "--env-file", "one.env", "--env-file", "two.env", "-e", "C=flag",
                "--env", "FROM_CALLER", "-e", "D=x=y",
            ], extra: ["FROM_CALLER": "caller value"])
        #expect(build.status == 0, "\(build.all)")
        let buildDir = try #require(
            build.stdout.split(separator: "\n").first { $0.hasPrefix("=====> Build directory: ") }?.split(
                separator: " "
            ).last)
        let config = try String(contentsOfFile: "\(buildDir)/config.txt", encoding: .utf8)
        #expect(config.contains("A=[one]"))
        #expect(config.contains("B=[two]"), "a later --env-file wins: \(config)")
        #expect(config.contains("C=[flag]"), "--env wins over the files: \(config)")
        #expect(config.contains("FROM_CALLER=[caller value]"))
        #expect(config.contains("D=[x=y]"))

        let missing = try world.multipack(["build", app, "--buildpack", dump, "-e", "NOT_SET_ANYWHERE"])
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("NOT_SET_ANYWHERE is not set there"), "\(missing.all)")
    }

    @Test func stackIsOneOfHerokusStacks() throws {
        let world = try LocalWorld("stack")
        let app = try world.app(buildpacks: nil)
        let dump = try dumpBuildpack(in: world.temp)
        let bad = try world.multipack(["build", app, "--buildpack", dump, "--stack", "heroku-99"])
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("--stack heroku-99 is not a Heroku stack"), "\(bad.all)")
        #expect(!bad.stdout.contains("Building"), "nothing ran")
        let ci = try world.multipack(["ci", app, "--buildpack", dump, "--stack", "cedar"])
        #expect(ci.status == 2)
        let good = try world.multipack(["build", app, "--buildpack", dump, "--stack", "heroku-22"])
        #expect(good.status == 0, "\(good.all)")
    }

    @Test func everyUsageErrorExitsTwo() throws {
        let world = try LocalWorld("usage")
        let app = try world.app(buildpacks: nil)
        for arguments in [
            ["build"], ["build", app, "--no-such-flag"], ["compile", app], ["ci"], ["run"], ["nonsense"],
            ["build", app, "--slug-limit", "lots"], ["detect"], ["build", app, "-e", "1BAD=x"],
            // The shims' verbs skip the parser only in their exact shape.
            ["detect", app, "--bogus"], ["release", app, "extra"], ["compile", app, app, "-x"],
        ] {
            let result = try world.multipack(arguments)
            #expect(result.status == 2, "\(arguments): \(result.all)")
            #expect(!result.stderr.isEmpty)
        }
        #expect(try world.multipack(["build", "--help"]).status == 0)
    }

    @Test func aBadBuildpacksLineInALocalBuildExitsTwoWithItsNumber() throws {
        let world = try LocalWorld("badline")
        let app = try world.app(buildpacks: nil)
        try "# fine\nnot a buildpack at all\n".write(toFile: app + "/.buildpacks", atomically: true, encoding: .utf8)
        for verb in ["build", "ci"] {
            let result = try world.multipack([verb, app])
            #expect(result.status == 2, "\(result.all)")
            #expect(result.stderr.contains("Line 2: not a buildpack at all"), "\(result.all)")
        }
    }

    @Test func ciTakesBuildsSlugOptions() throws {
        let world = try LocalWorld("cislug")
        let app = try world.app(buildpacks: ["tester"])
        let slug = world.temp.path + "/ci.slug.tgz"
        let ci = try world.multipack(["ci", app, "--slug", slug, "--slug-limit", "100"])
        #expect(ci.status == 0, "\(ci.all)")
        #expect(FileManager.default.fileExists(atPath: slug))
        let tooSmall = try world.multipack(["ci", app, "--slug", slug, "--slug-limit", "0"])
        #expect(tooSmall.status == 1, "\(tooSmall.all)")
        #expect(tooSmall.stderr.contains("is too large (max is 0M)."))
        #expect(try world.multipack(["ci", app, "--slug-limit", "-1"]).status == 2)
    }

    /// argument-parser's own description of every command: each argument and option says what it is.
    @Test func everyArgumentOfEveryVerbHasHelp() throws {
        let dump = try Shell.run(Repo.binary, ["--experimental-dump-help"])
        #expect(dump.status == 0)
        let root = try #require(try JSONSerialization.jsonObject(with: Data(dump.stdout.utf8)) as? [String: Any])
        var missing: [String] = []
        var checked = 0
        func visit(_ command: [String: Any], path: String) {
            for argument in command["arguments"] as? [[String: Any]] ?? [] {
                let names = (argument["names"] as? [[String: Any]])?.compactMap { $0["name"] as? String } ?? []
                let name = names.first ?? (argument["valueName"] as? String) ?? "?"
                if ["help", "version", "h"].contains(name) { continue }
                checked += 1
                if ((argument["abstract"] as? String) ?? "").isEmpty { missing.append("\(path) \(name)") }
            }
            // argument-parser's own `help` command is not ours to describe.
            for sub in command["subcommands"] as? [[String: Any]] ?? [] where sub["commandName"] as? String != "help" {
                visit(sub, path: path + " " + ((sub["commandName"] as? String) ?? "?"))
            }
        }
        visit(try #require(root["command"] as? [String: Any]), path: "multipack")
        #expect(checked > 30)
        #expect(missing.isEmpty, "no help text: \(missing)")
    }
}

/// Heroku CI's part (SPEC §8): nothing tested is a failure; app.json's test-setup and test scripts.
@Suite struct CITestScriptTests {
    @Test func nothingTestedFailsTheRunAndBinTest() throws {
        let world = try LocalWorld("ci-none")
        let app = try world.app(buildpacks: ["node"])
        let ci = try world.multipack(["ci", app, "--json"])
        #expect(ci.status == 1, "\(ci.all)")
        #expect(ci.stderr.contains("Nothing was tested: none of the buildpacks has a bin/test."))
        #expect(!ci.all.contains("Tests passed"))
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(ci.stdout.utf8)) as? [String: Any])
        #expect((summary["failure"] as? String)?.contains("Nothing was tested") == true, "\(ci.stdout)")
        #expect(summary["outcome"] as? String == "failed")

        let list = try world.multipack(["ci", app, "--buildpack", world.buildpack("node")])
        #expect(list.status == 1)
        #expect(list.stderr.contains("Nothing was tested"))

        // Heroku's own path: bin/test-compile, then bin/test through the shims.
        let temp = try TempDir("bintest-none")
        let multipack = try Multipack(in: temp)
        let heroku = try App("python-node", in: temp, buildpacks: world.buildpack("node") + "\n")
        let tmp = ["TMPDIR": temp.sub("tmp")]
        let compile = try multipack.shim("test-compile", [heroku.build, heroku.cache, heroku.env], environment: tmp)
        #expect(compile.status == 0, "\(compile.all)")
        let test = try multipack.shim("test", [heroku.build, heroku.env], environment: tmp)
        #expect(test.status == 1, "\(test.all)")
        #expect(test.stderr.contains("Nothing was tested"))
    }

    @Test func appJSONTestScriptRunsInsteadOfBinTestAndGivesItsExitCode() throws {
        let world = try LocalWorld("ci-appjson")
        let app = try world.app(buildpacks: ["tester"])
        let appJSON = """
            {"name": "x", "environments": {"test": {"scripts": {
              "test-setup": "test -f tester-test-compiled && echo setup-after-test-compile > setup.txt && echo SETUP RAN",
              "test": "cat setup.txt && echo CI=$CI TESTER_READY=$TESTER_READY CONFIG=$CONFIG && exit ${EXIT_WITH:-0}"
            }}}}
            """
        try appJSON.write(toFile: app + "/app.json", atomically: true, encoding: .utf8)
        let passing = try world.multipack(["ci", app, "-e", "CONFIG=given"])
        #expect(passing.status == 0, "\(passing.all)")
        #expect(passing.stdout.contains("SETUP RAN"))
        #expect(passing.stdout.contains("setup-after-test-compile"), "test-setup ran after test-compile, before test")
        #expect(passing.stdout.contains("CI=true TESTER_READY=yes CONFIG=given"))
        #expect(!passing.stdout.contains("Running tests (fixture)"), "the buildpack's bin/test is not run")

        let failing = try world.multipack(["ci", app, "-e", "EXIT_WITH=3", "--json"])
        #expect(failing.status == 3, "\(failing.all)")
        #expect(failing.stderr.contains("Tests failed: app.json's test script ended with exit code 3."))
        let summary = try #require(
            try JSONSerialization.jsonObject(with: Data(failing.stdout.utf8)) as? [String: Any])
        #expect(summary["exit_code"] as? Int == 3)
        #expect((summary["failure"] as? String)?.contains("exit code 3") == true)

        // A failing test-setup stops the run before the tests.
        try appJSON.replacingOccurrences(of: "test -f tester-test-compiled", with: "false").write(
            toFile: app + "/app.json", atomically: true, encoding: .utf8)
        let setup = try world.multipack(["ci", app])
        #expect(setup.status == 1, "\(setup.all)")
        #expect(setup.stderr.contains("app.json's test-setup script failed"))
        #expect(!setup.stdout.contains("CI=true TESTER_READY"))
    }

    @Test func anAppJSONThatIsNotJSONIsBadInput() throws {
        let world = try LocalWorld("ci-badjson")
        let app = try world.app(buildpacks: ["tester"])
        try "{\"environments\": {\"test\": {\"scripts\": {\"test\": 5}}}}".write(
            toFile: app + "/app.json", atomically: true, encoding: .utf8)
        let ci = try world.multipack(["ci", app])
        #expect(ci.status == 2, "\(ci.all)")
        #expect(ci.stderr.contains("app.json cannot be read"))
        #expect(!ci.stderr.contains("DecodingError"))
        try "{nope".write(toFile: app + "/app.json", atomically: true, encoding: .utf8)
        let broken = try world.multipack(["ci", app])
        #expect(broken.status == 2)
        #expect(broken.stderr.contains("it is not valid JSON"))
    }
}
