import Foundation
import Glibc
import Testing

@testable import MultipackKit

/// The app's bin/pre_compile and bin/post_compile (SPEC §7.4), with their processes played by the
/// test: run in place, once, with the config vars a hook gets, hidden from each child and put back.
@Suite struct AppHooksTests {
    struct World {
        let temp: TempDir
        let dirs: BuildDirectories
        let processes = FakeProcesses()
        let log = CapturedLog()

        init(hooks: [String: String]) throws {
            temp = try TempDir("hooks")
            dirs = temp.buildDirectories()
            for (name, text) in hooks { try temp.write("build/bin/\(name)", text) }
        }

        var runner: StageRunner { BuildContext(processes: processes, log: log.log).runner() }
        func exists(_ relative: String) -> Bool { FileManager.default.fileExists(atPath: dirs.build + "/" + relative) }
    }

    @Test func aHookRunsAtItsOwnPathInBuildDirWithTheConfigVarsAHookGets() throws {
        let world = try World(hooks: ["pre_compile": "#!/bin/sh\necho hi\n"])
        let build = world.dirs.build
        world.processes.on("bin/pre_compile") { command in
            #expect(command.workingDirectory == build)
            #expect(command.environment["BUILD_DIR"] == build)
            #expect(command.environment["SECRET"] == "s3")
            // PATH and the variables Heroku withholds from a hook never come from ENV_DIR.
            #expect(command.environment["PATH"] == "/usr/bin")
            #expect(command.environment["LD_PRELOAD"] == nil)
            #expect(command.environment["not-a-name"] == nil)
            return FakeProcesses.exited(seconds: 0.75)
        }
        var hooks = AppHooks(dirs: world.dirs)
        let environment = AppHooks.environment(
            base: ["PATH": "/usr/bin"], dirs: world.dirs,
            configVars: ["SECRET": "s3", "PATH": "/evil", "LD_PRELOAD": "x.so", "not-a-name": "v"])
        #expect(hooks.preCompilePending)
        let seconds = try hooks.run("pre_compile", environment: environment, log: world.log.log, runner: world.runner)
        #expect(seconds == 0.75)
        #expect(!hooks.preCompilePending)
        #expect(world.log.stdout == "=====> Running bin/pre_compile\n")
        // Without its executable bit and with a #! line, it is made executable and run directly.
        #expect(world.processes.ran == ["build/bin/pre_compile"])
        #expect(Files.isExecutable(build + "/bin/pre_compile"))
    }

    @Test func aHookWithoutAShebangRunsThroughBash() throws {
        let world = try World(hooks: ["post_compile": "echo no shebang\n"])
        world.processes.on("bash") { _ in FakeProcesses.exited() }
        var hooks = AppHooks(dirs: world.dirs)
        _ = try hooks.run("post_compile", environment: [:], log: world.log.log, runner: world.runner)
        #expect(world.processes.calls.map(\.command.arguments) == [[world.dirs.build + "/bin/post_compile"]])
    }

    @Test func aFailingHookFailsTheBuildNamingIt() throws {
        let world = try World(hooks: ["post_compile": "#!/bin/sh\nexit 3\n"])
        world.processes.on("bin/post_compile") { _ in FakeProcesses.exited(3) }
        var hooks = AppHooks(dirs: world.dirs)
        let error = #expect(throws: MultipackError.self) {
            try hooks.run("post_compile", environment: [:], log: world.log.log, runner: world.runner)
        }
        #expect(
            error?.lines == [
                "The app's bin/post_compile hook failed with exit code 3", "Stage: post_compile", "",
                "bin/post_compile is your app's own script; its output above says why.",
            ])
    }

    @Test func hooksAreHiddenFromAChildAndPutBackAfterIt() throws {
        let world = try World(hooks: ["pre_compile": "#!/bin/sh\n", "post_compile": "#!/bin/sh\n"])
        var hooks = AppHooks(dirs: world.dirs)
        try hooks.hide()
        #expect(!world.exists("bin/pre_compile") && !world.exists("bin/post_compile"))
        #expect(world.exists("bin/.multipack-held-pre_compile") && world.exists("bin/.multipack-held-post_compile"))
        hooks.restore()
        #expect(world.exists("bin/pre_compile") && world.exists("bin/post_compile"))
        #expect(!world.exists("bin/.multipack-held-pre_compile"))
    }

    @Test func aHookAChildPutInPlaceIsTheAppsHookFromThenOn() throws {
        let world = try World(hooks: ["post_compile": "#!/bin/sh\necho old\n"])
        var hooks = AppHooks(dirs: world.dirs)
        try hooks.hide()
        // The child (a monorepo buildpack) brings its own post_compile and a pre_compile.
        try world.temp.write("build/bin/post_compile", "#!/bin/sh\necho new\n")
        try world.temp.write("build/bin/pre_compile", "#!/bin/sh\necho new pre\n")
        hooks.restore()
        #expect(try String(contentsOfFile: world.dirs.build + "/bin/post_compile", encoding: .utf8).contains("new"))
        #expect(!world.exists("bin/.multipack-held-post_compile"))
        // A pre_compile a child brought in has not run yet.
        #expect(hooks.preCompilePending && hooks.present("pre_compile"))
    }

    @Test func hooksAKilledBuildLeftHiddenArePutBack() throws {
        let world = try World(hooks: [".multipack-held-post_compile": "#!/bin/sh\n"])
        #expect(AppHooks(dirs: world.dirs).recoverLeftovers() == ["post_compile"])
        #expect(world.exists("bin/post_compile") && !world.exists("bin/.multipack-held-post_compile"))
    }
}
