import Foundation
import Glibc
import Testing

@testable import MultipackKit

/// One child's detect, compile, export and release (SPEC §7.2), with its processes played by the
/// test: what each outcome makes of the build, and the message that names the child.
@Suite struct ChildRunnerTests {
    /// A child whose bin/ scripts exist (their contents are never run: the fake plays them).
    struct World {
        let temp: TempDir
        let dirs: BuildDirectories
        let child: ChildRun
        let processes = FakeProcesses()
        let stop = ManualStop()

        init() throws {
            temp = try TempDir("runner")
            try temp.writePlayedBuildpack("child")
            dirs = temp.buildDirectories()
            let entry = BuildpackEntry(
                line: 1, text: "https://user:secret@example.com/bp.git", reference: .git(url: "x", ref: nil))
            child = ChildRun(
                fetched: FetchedChild(
                    entry: entry, directory: temp.path + "/child", version: "0123456789abcdef", source: "cloned",
                    seconds: 0),
                position: 2, total: 3)
        }

        var runner: ChildRunner {
            ChildRunner(dirs: dirs, context: BuildContext(processes: processes, stop: StopToken(stop)))
        }
    }

    @Test func detectNamesTheChildFromItsFirstLineAndIsTimedByTheProcess() throws {
        let world = try World()
        let (build, directory) = (world.dirs.build, world.child.fetched.directory)
        world.processes.on("bin/detect") { command in
            #expect(command.arguments == [build])
            #expect(command.workingDirectory == directory)
            return FakeProcesses.exited(stdout: "  Node.js  \nsecond line\n", seconds: 0.5)
        }
        var child = world.child
        try world.runner.detect(&child, environment: [:])
        #expect(child.name == "Node.js")
        #expect(child.detectSeconds == 0.5)
    }

    @Test func aFailingDetectSaysTheAppIsNotCompatibleWithDetectsStderr() throws {
        let world = try World()
        world.processes.on("bin/detect") { _ in FakeProcesses.exited(1, stderr: "no package.json\n") }
        var child = world.child
        let error = #expect(throws: MultipackError.self) { try world.runner.detect(&child, environment: [:]) }
        #expect(error?.exitCode == 1)
        #expect(error?.headline == "App not compatible with buildpack: https://***@example.com/bp.git")
        #expect(
            error?.details == [
                "URL: https://***@example.com/bp.git", "Stage: detect (exit code 1)", "", "no package.json",
            ])
    }

    @Test func aCompileKilledByASignalNamesTheChildTheStageAndTheSignal() throws {
        let world = try World()
        world.processes.on("bin/compile") { _ in
            ProcessResult(termination: .signaled(SIGKILL), stdout: [], stderr: [], seconds: 1)
        }
        var child = world.child
        child.name = "Node.js"
        let error = #expect(throws: MultipackError.self) {
            try world.runner.compile(&child, environment: [:], testCompile: false)
        }
        #expect(error?.headline == "Buildpack [2/3] Node.js failed during compile")
        #expect(
            error?.lines == [
                "Buildpack [2/3] Node.js failed during compile", "URL: https://***@example.com/bp.git",
                "Version: 0123456789abcdef", "Stage: compile", "", "bin/compile failed with signal SIGKILL.", "",
                "The buildpack's own output above says why; no later buildpack was run.",
            ])
    }

    @Test func testCompileRunsTheChildsOwnTestCompileWhenItHasOne() throws {
        let world = try World()
        try world.temp.write("child/bin/test-compile", "#!/bin/sh\n", executable: true)
        world.processes.on("bin/test-compile") { _ in FakeProcesses.exited() }
        var child = world.child
        try world.runner.compile(&child, environment: [:], testCompile: true)
        #expect(world.processes.ran == ["child/bin/test-compile"])
    }

    @Test func aStopDuringCompileIsTheBuildsInterruptionNamingTheChildAndStage() throws {
        let world = try World()
        let stop = world.stop
        world.processes.on("bin/compile") { _ in
            stop.request(SIGTERM)
            return ProcessResult(termination: .signaled(SIGTERM), stdout: [], stderr: [], seconds: 1)
        }
        var child = world.child
        child.name = "Node.js"
        let error = #expect(throws: MultipackError.self) {
            try world.runner.compile(&child, environment: [:], testCompile: false)
        }
        #expect(error?.kind == .interrupted(SIGTERM))
        #expect(error?.exitCode == 143)
        #expect(
            error?.headline
                == "The build was stopped by SIGTERM while buildpack [2/3] Node.js (https://***@example.com/bp.git) "
                + "was in compile; its processes were stopped with it.")
    }

    @Test func aChildThatCannotBeStartedSaysWhy() throws {
        let world = try World()
        world.processes.on("bin/compile") { command in throw SpawnError(executable: command.executable, errno: EACCES) }
        var child = world.child
        let error = #expect(throws: MultipackError.self) {
            try world.runner.compile(&child, environment: [:], testCompile: false)
        }
        #expect(error?.details.last?.hasPrefix("bin/compile could not be started: could not start ") == true)
        #expect(error?.details.last?.hasSuffix("Permission denied.") == true)
    }

    @Test func releaseOutputThatIsNotAMappingFailsNamingTheChild() throws {
        let world = try World()
        world.processes.on("bin/release") { _ in FakeProcesses.exited(stdout: "- a\n- list\n") }
        var child = world.child
        let error = #expect(throws: MultipackError.self) { try world.runner.release(&child, environment: [:]) }
        #expect(error?.details.contains("Stage: release") == true)
        #expect(error?.details.last?.hasPrefix("bin/release must print a YAML mapping, but ") == true)
    }

    @Test func releaseIsParsedAndTimed() throws {
        let world = try World()
        world.processes.on("bin/release") { _ in
            FakeProcesses.exited(stdout: "default_process_types:\n  web: node server.js\n", seconds: 0.125)
        }
        var child = world.child
        try world.runner.release(&child, environment: [:])
        #expect(child.release.processTypes.map(\.key) == ["web"])
        #expect(child.releaseSeconds == 0.125)
    }

    @Test func anExportIsSourcedByBashOnTopOfTheEnvironmentSoFar() throws {
        let world = try World()
        try world.temp.write(
            "child/export", "export PATH=\"/child/bin:$PATH\"\nif true; then export FROM_CHILD=yes; fi\nunset GONE\n")
        let (environment, change) = try world.runner.applyExport(
            world.child, to: ["PATH": "/usr/bin:/bin", "GONE": "x", "KEPT": "y"])
        #expect(environment == ["PATH": "/child/bin:/usr/bin:/bin", "FROM_CHILD": "yes", "KEPT": "y"])
        #expect(change.unset == ["GONE"])
        // Sourced for real: bash ran, and nothing else did.
        #expect(world.processes.ran == ["bash"])
    }
}
