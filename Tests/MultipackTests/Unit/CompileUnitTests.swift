import Foundation
import Glibc
import Testing

@testable import MultipackKit

/// `bin/compile` as one pipeline (SPEC §5–§7), the children's and hooks' processes played by the
/// test on a test clock: the order things run in, the environment threaded through, the release,
/// the record and the export it leaves, and what a failure or a stop leaves.
@Suite struct CompileUnitTests {
    struct World {
        let temp: TempDir
        let dirs: BuildDirectories
        let buildpackDir: String
        let processes = FakeProcesses()
        let clock = TestClock()
        let log = CapturedLog()
        let stop = ManualStop()

        /// An app listing `children` local buildpack directories, with the given hooks.
        init(children: Int, hooks: [String] = []) throws {
            temp = try TempDir("compile-unit")
            dirs = temp.buildDirectories()
            buildpackDir = temp.sub("multipack")
            var list = ""
            for index in 1...children {
                try temp.writePlayedBuildpack("build/bp\(index)")
                list += "./bp\(index)\n"
                processes.on("/\(index)/bin/detect") { _ in FakeProcesses.exited(stdout: "Child \(index)\n") }
                processes.on("/\(index)/bin/compile") { _ in FakeProcesses.exited(seconds: Double(index)) }
                processes.on("/\(index)/bin/release") { _ in
                    FakeProcesses.exited(stdout: "default_process_types:\n  web\(index): run \(index)\n")
                }
            }
            try temp.write("build/.buildpacks", list)
            for hook in hooks { try temp.write("build/bin/\(hook)", "#!/bin/sh\n", executable: true) }
            for hook in hooks { processes.on("bin/\(hook)") { _ in FakeProcesses.exited() } }
        }

        var compile: Compile {
            let context = BuildContext(processes: processes, clock: clock, log: log.log, stop: StopToken(stop))
            return Compile(
                dirs: dirs,
                invocation: Invocation(
                    buildpackDir: buildpackDir, environment: ["PATH": "/usr/bin:/bin"], context: context))
        }

        var report: String { Report.run(buildpackDir: buildpackDir, buildDir: dirs.build) }
        var release: String { ReleaseVerb.run(buildpackDir: buildpackDir, buildDir: dirs.build) }
        /// The children's and hooks' processes, as `2/bin/compile` and `build/bin/post_compile`.
        var ran: [String] { processes.ran.filter { $0 != "bash" } }
    }

    @Test func hooksRunOnceAroundTheChildrenWhichRunInListOrder() throws {
        let world = try World(children: 2, hooks: ["pre_compile", "post_compile"])
        try world.compile.run()
        #expect(
            world.ran == [
                "build/bin/pre_compile", "1/bin/detect", "1/bin/compile", "1/bin/release", "2/bin/detect",
                "2/bin/compile", "2/bin/release", "build/bin/post_compile",
            ])
        #expect(world.release == "---\ndefault_process_types:\n  \"web1\": \"run 1\"\n  \"web2\": \"run 2\"\n")
        #expect(world.report.contains("outcome: \"succeeded\""))
        #expect(world.log.stdout.contains("=====> [2/2] ./bp2 @ local directory"))
        #expect(world.log.stdout.contains("process type web2 from [2/2] Child 2"))
    }

    @Test func aChildSeesWhatTheEarlierOnesExportedAndTheReleaseSeesNone() throws {
        let world = try World(children: 2)
        world.processes.on("/1/bin/compile") { command in
            try "export FROM_ONE=1\nexport PATH=\"/one/bin:$PATH\"\n".write(
                toFile: command.workingDirectory! + "/export", atomically: true, encoding: .utf8)
            return FakeProcesses.exited()
        }
        world.processes.on("/2/bin/compile") { command in
            #expect(command.environment["FROM_ONE"] == "1")
            #expect(command.environment["PATH"] == "/one/bin:/usr/bin:/bin")
            return FakeProcesses.exited()
        }
        world.processes.on("/2/bin/release") { command in
            // bin/release gets the build's environment without the exports, as on Heroku.
            #expect(command.environment["FROM_ONE"] == nil)
            return FakeProcesses.exited()
        }
        try world.compile.run()
        let export = try String(contentsOfFile: world.buildpackDir + "/export", encoding: .utf8)
        #expect(export.contains("export FROM_ONE='1'"))
        #expect(world.processes.calls.contains { $0.command.executable.hasSuffix("2/bin/compile") })
    }

    @Test func eachChildIsTimedByItsOwnProcessesOnTheTestClock() throws {
        let world = try World(children: 2)
        try world.compile.run()
        // The fake compiles take 1 s and 2 s; nothing else moved the test clock.
        #expect(world.report.contains("child_1_compile_seconds: 1.000"))
        #expect(world.report.contains("child_2_compile_seconds: 2.000"))
        #expect(world.report.contains("total_seconds: 0.000"))
    }

    @Test func aFailingChildEndsTheBuildAndLeavesNoReleaseBehind() throws {
        let world = try World(children: 3)
        try world.compile.run()
        #expect(world.release != "--- {}\n")
        world.processes.on("/2/bin/compile") { _ in FakeProcesses.exited(7) }
        let error = #expect(throws: MultipackError.self) { try world.compile.run() }
        #expect(error?.exitCode == 1)
        #expect(error?.headline == "Buildpack [2/3] Child 2 failed during compile")
        #expect(!world.ran.suffix(2).contains("3/bin/detect"))
        #expect(world.release == "--- {}\n")
        #expect(world.report.contains("outcome: \"failed\""))
    }

    @Test func aStopDuringACompileRunsNothingMorePutsTheHooksBackAndSaysWhere() throws {
        let world = try World(children: 2, hooks: ["post_compile"])
        let stop = world.stop
        world.processes.on("/1/bin/compile") { _ in
            stop.request(SIGINT)
            return ProcessResult(termination: .signaled(SIGINT), stdout: [], stderr: [], seconds: 0.1)
        }
        let error = #expect(throws: MultipackError.self) { try world.compile.run() }
        #expect(error?.exitCode == 130)
        #expect(error?.headline.contains("while buildpack [1/2] Child 1 (./bp1) was in compile") == true)
        #expect(world.ran == ["1/bin/detect", "1/bin/compile"])
        #expect(FileManager.default.fileExists(atPath: world.dirs.build + "/bin/post_compile"))
        #expect(world.report.contains("outcome: \"interrupted\""))
    }

    @Test func noBuildpacksFileIsBadInput() throws {
        let world = try World(children: 1)
        try FileManager.default.removeItem(atPath: world.dirs.build + "/.buildpacks")
        let error = #expect(throws: MultipackError.self) { try world.compile.run() }
        #expect(error?.kind == .usage && error?.exitCode == 2)
        #expect(error?.headline == "There is no .buildpacks file in the app.")
        #expect(world.ran.isEmpty)
    }
}
