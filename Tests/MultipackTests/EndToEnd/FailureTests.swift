import Foundation
import Testing

/// Every failure: exit code, a ` !     ` block naming child, stage and url, and no later child.
@Suite struct FailureTests {
    struct Case: Sendable, CustomStringConvertible {
        var child: String
        var stage: String
        var expected: [String]
        var description: String { child }
    }

    static let cases: [Case] = [
        Case(
            child: "fail-detect", stage: "detect",
            expected: [
                "App not compatible with buildpack: file://", "this app has no Gemfile", "Stage: detect (exit code 1)",
            ]),
        Case(
            child: "fail-compile", stage: "compile",
            expected: [
                "Buildpack [2/3] Failing (fixture) failed during compile", "bin/compile failed with exit code 3",
                "Stage: compile",
            ]),
        Case(
            child: "bad-release", stage: "release",
            expected: [
                "Buildpack [2/3] Bad release (fixture) failed during release", "must print a YAML mapping",
                "just a sentence, not YAML",
            ]),
        Case(
            child: "bad-export", stage: "export",
            expected: [
                "Buildpack [2/3] Bad export (fixture) failed during export",
                "Sourcing the export file it wrote failed with exit code", "export: line 2: unexpected EOF",
            ]),
    ]

    @Test(arguments: cases) func failingChildStopsTheBuild(_ failing: Case) throws {
        let temp = try TempDir(failing.child)
        let first = try gitChild("node", in: temp)
        let bad = try gitChild(failing.child, in: temp)
        let after = try gitChild("env-probe", in: temp)
        let app = try App("python-node", in: temp, buildpacks: "file://\(first)\nfile://\(bad)\nfile://\(after)\n")
        let mp = try Multipack(in: temp)
        let compile = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(compile.status == 1, "\(compile.all)")
        for text in failing.expected { #expect(compile.stderr.contains(text), "missing \(text) in \(compile.stderr)") }
        #expect(compile.stderr.contains("file://\(bad)"))
        #expect(compile.stderr.contains(" !     "))
        #expect(!compile.stderr.contains("Fatal error") && !compile.stderr.contains("Stack dump"))
        #expect(!app.exists("env-probe.txt"), "a later child ran")
        #expect(!app.exists("fail-detect-compiled"))
        // The hooks are put back on failure too, and post_compile never ran.
        #expect(app.exists("bin/post_compile") && !app.exists("post_compile.log"))
        let report = try mp.shim("report", [app.build, app.cache, app.env])
        #expect(report.status == 0 && report.stdout.contains("outcome: \"failed\""))
    }

    @Test func failingHookIsNamed() throws {
        let temp = try TempDir("hookfail")
        let node = try gitChild("node", in: temp)
        let app = try App("python-node", in: temp, buildpacks: "file://\(node)\n")
        try "#!/usr/bin/env bash\necho boom\nexit 7\n".write(
            toFile: app.build + "/bin/post_compile", atomically: true, encoding: .utf8)
        let mp = try Multipack(in: temp)
        let compile = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(compile.status == 1)
        #expect(compile.stderr.contains("The app's bin/post_compile hook failed with exit code 7"))
        // Not executable any more (written fresh), yet it ran: made executable, by its #! line.
        #expect(compile.stdout.contains("boom"))
        #expect(app.exists("bin/post_compile"))
    }

    @Test func badBuildpacksLineIsAUsageErrorWithItsLineNumber() throws {
        let temp = try TempDir("badline")
        let app = try App(nil, in: temp, buildpacks: "# ok\n./somewhere\nftp://user:hunter2@host/x.git\n")
        try FileManager.default.createDirectory(atPath: app.build + "/somewhere", withIntermediateDirectories: true)
        let mp = try Multipack(in: temp)
        let compile = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(compile.status == 2)
        #expect(compile.stderr.contains("Line 3: ftp://***@host/x.git"))
        #expect(!compile.all.contains("hunter2"))
    }

    @Test func credentialsInURLsNeverReachTheOutput() throws {
        let temp = try TempDir("secret")
        // Port 9 on loopback refuses at once: git fails and prints the URL in its error.
        let app = try App(nil, in: temp, buildpacks: "https://bob:tok3n-s3cret@127.0.0.1:9/org/bp.git#main\n")
        let mp = try Multipack(in: temp)
        let compile = try mp.shim("compile", [app.build, app.cache, app.env], environment: ["BUILDPACK_XTRACE": "1"])
        #expect(compile.status == 1)
        #expect(compile.stderr.contains("Failed to fetch buildpack [1/1] https://***@127.0.0.1:9/org/bp.git#main"))
        // git gets the URL without its credentials (they go through its environment).
        #expect(compile.stdout.contains("+ git ls-remote -- https://127.0.0.1:9/org/bp.git"))
        #expect(!compile.all.contains("tok3n-s3cret"))
        #expect(!compile.all.contains("bob"))
        // A query value in a line that cannot be read is masked too.
        try "https://h.example/x.git?token=qu3ry-s3cret extra\n".write(
            toFile: app.build + "/.buildpacks", atomically: true, encoding: .utf8)
        let bad = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("token=***"))
        #expect(!bad.all.contains("qu3ry-s3cret"))
    }

    @Test func missingLocalDirectoryIsNamed() throws {
        let temp = try TempDir("missingdir")
        let app = try App(nil, in: temp, buildpacks: "../no-such-buildpack\n")
        let mp = try Multipack(in: temp)
        let compile = try mp.shim("compile", [app.build, app.cache, app.env])
        // Bad input (SPEC §11), with its line, before anything is fetched.
        #expect(compile.status == 2)
        #expect(compile.stderr.contains("Line 1: ../no-such-buildpack"), "\(compile.all)")
        #expect(compile.stderr.contains("names a directory that does not exist"))
    }

    @Test func unknownRefIsNamed() throws {
        let temp = try TempDir("badref")
        let node = try gitChild("node", in: temp)
        let app = try App(nil, in: temp, buildpacks: "file://\(node)#no-such-branch\n")
        let mp = try Multipack(in: temp)
        let compile = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(compile.status == 1)
        #expect(compile.stderr.contains("there is no branch, tag or commit named `no-such-branch`"))
    }

    /// detect needs `.buildpacks` to be there; compile, which reads it, needs a buildpack in it.
    @Test func detectNeedsAListAndCompileABuildpackInIt() throws {
        let temp = try TempDir("detect")
        let mp = try Multipack(in: temp)
        let none = try App(nil, in: temp, buildpacks: nil)
        let missing = try mp.shim("detect", [none.build])
        #expect(missing.status == 1 && missing.stdout.isEmpty && missing.stderr.contains("No .buildpacks file"))
        try "# only a comment\n\n".write(toFile: none.build + "/.buildpacks", atomically: true, encoding: .utf8)
        #expect(try mp.shim("detect", [none.build]).status == 0)
        let empty = try mp.shim("compile", [none.build, none.cache, none.env])
        #expect(empty.status == 2 && empty.stderr.contains(".buildpacks lists no buildpack"), "\(empty.all)")
        // Release before any compile is the empty release.
        #expect(try mp.shim("release", [none.build]).stdout == "--- {}\n")
    }

    @Test func sigtermStopsEverythingWithinSeconds() throws {
        let temp = try TempDir("sigterm")
        let slow = try gitChild("slow", in: temp)
        let after = try gitChild("env-probe", in: temp)
        let app = try App("python-node", in: temp, buildpacks: "file://\(slow)\nfile://\(after)\n")
        let mp = try Multipack(in: temp)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: mp.dir + "/bin/compile")
        process.arguments = [app.build, app.cache, app.env]
        process.environment = Multipack.environment(["TMPDIR": mp.tmp])
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        try process.run()
        // Wait until the slow compile (and its background helper) are running: both pids written,
        // not just the files created (an empty one makes the forced pid read below crash the run).
        let deadline = Date().addingTimeInterval(30)
        let written = { (file: String) in
            app.read(file).map { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) != nil } ?? false
        }
        while !written("slow-compile.pid") || !written("slow-helper.pid") {
            #expect(Date() < deadline, "slow child never started")
            if Date() >= deadline { process.terminate(); return }
            usleep(20_000)
        }
        let sent = Date()
        kill(process.processIdentifier, SIGTERM)
        while process.isRunning && Date().timeIntervalSince(sent) < 20 { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        let elapsed = Date().timeIntervalSince(sent)
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(elapsed < 5, "took \(elapsed) s")
        #expect(process.terminationStatus != 0)
        #expect(output.contains("stopped by SIGTERM"))
        #expect(output.contains("Slow (fixture)"))
        for file in ["slow-compile.pid", "slow-helper.pid"] {
            let pid = Int32(app.read(file)!.trimmingCharacters(in: .whitespacesAndNewlines))!
            usleep(100_000)
            #expect(!isRunning(pid), "\(file) process \(pid) is still alive")
        }
        #expect(!app.exists("env-probe.txt"))
        #expect(app.exists("bin/pre_compile") && app.exists("bin/post_compile"))
    }
}

@Suite struct HerokuCITests {
    @Test func testCompileThenTestPasses() throws {
        let temp = try TempDir("ci-pass")
        let node = try gitChild("node", in: temp)
        let tester = try gitChild("tester", in: temp)
        let app = try App("python-node", in: temp, buildpacks: "file://\(node)\nfile://\(tester)\n")
        let mp = try Multipack(in: temp)
        let compile = try mp.shim("test-compile", [app.build, app.cache, app.env])
        #expect(compile.status == 0, "\(compile.all)")
        #expect(app.exists("tester-test-compiled") && !app.exists("tester-compiled"))
        // The node child has no bin/test-compile: its bin/compile ran.
        #expect(compile.stdout.contains("node installed"))
        let test = try mp.shim("test", [app.build, app.env])
        #expect(test.status == 0, "\(test.all)")
        #expect(test.stdout.contains("Running tests (fixture), TESTER_READY=yes"))
        #expect(test.stdout.contains("all passed"))
    }

    @Test func failingTestsFailTheRun() throws {
        let temp = try TempDir("ci-fail")
        let tester = try gitChild("tester", in: temp)
        let app = try App("python-node", in: temp, buildpacks: "file://\(tester)\n")
        try "".write(toFile: app.build + "/tests-fail", atomically: true, encoding: .utf8)
        let mp = try Multipack(in: temp)
        #expect(try mp.shim("test-compile", [app.build, app.cache, app.env]).status == 0)
        let test = try mp.shim("test", [app.build, app.env])
        #expect(test.status == 1)
        #expect(
            test.stderr.contains("Tests failed: buildpack [1/1] Tester (fixture)'s bin/test ended with exit code 1"))
    }

    @Test func testWithoutTestCompileSaysWhatToDo() throws {
        let temp = try TempDir("ci-none")
        let app = try App(nil, in: temp, buildpacks: "./x\n")
        let mp = try Multipack(in: temp)
        let test = try mp.shim("test", [app.build, app.env])
        #expect(test.status == 1)
        #expect(test.stderr.contains("run it first"))
    }
}

/// Alive and not a zombie (in a container nobody may reap orphans, and a zombie runs nothing).
func isRunning(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return false }
    let state = stat[stat.index(close, offsetBy: 2)]
    return state != "Z" && state != "X"
}
