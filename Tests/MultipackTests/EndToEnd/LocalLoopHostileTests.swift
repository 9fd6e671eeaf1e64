import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The second red team's pass over the local loop (issue #23): a hostile app.json, buildpack or
/// command against `ci`, `build` and `run`, through the real binary.
@Suite struct LocalLoopHostileTests {
    /// An app the inline fixture builds by running its own `bin/compile` (`compile`'s lines).
    static func inlineApp(_ sandbox: SandboxWorld, compile: String, files: [String: String] = [:]) throws -> String {
        try sandbox.app(
            ["inline"], files: files.merging(["bin/compile": "#!/bin/bash\nset -e\ncd \"$1\"\n\(compile)\n"]) { $1 })
    }

    /// app.json's `environments.test.env` names become files of ENV_DIR: a name that climbs out of
    /// it wrote any file the caller may write (as root: anywhere), with the value as its content.
    @Test func ciRefusesATestEnvNameThatIsNoConfigVarName() throws {
        let sandbox = try SandboxWorld("hostile-appjson-env", runner: .caller)
        let app = try Self.inlineApp(sandbox, compile: "true")
        let target = sandbox.world.temp.path + "/escaped"
        let climb = String(repeating: "../", count: 40) + String(target.dropFirst())
        for name in [climb, "a/b", "", "..", "A B"] {
            try AppJSONTests.write(
                ["environments": ["test": ["env": [name: "* * * * * root id\n"], "scripts": ["test": "true"]]]], to: app
            )
            let ci = try sandbox.multipack(["ci", app])
            #expect(ci.status == 2, "\(name): \(ci.all)")
            #expect(ci.stderr.contains("environments.test.env has `"), "\(ci.stderr)")
            #expect(ci.stderr.contains("which is not a config var name"), "\(ci.stderr)")
            #expect(!FileManager.default.fileExists(atPath: target), "app.json wrote \(target)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: sandbox.world.tmp).isEmpty)
    }

    /// A name given twice: the last value counts, as in Heroku's parsers, and the earlier one is
    /// no config var at all (it once became one named "\0duplicate-0", which no file can be).
    @Test func ciKeepsTheLastOfATestEnvNameGivenTwice() throws {
        let sandbox = try SandboxWorld("hostile-appjson-dup", runner: .caller)
        let app = try Self.inlineApp(sandbox, compile: "true")
        try
            #"{"environments": {"test": {"env": {"TWICE": "first", "TWICE": "last", "ONCE": "x"}, "scripts": {"test": "env | grep -a -c duplicate; echo \"seen $TWICE $ONCE\""}}}}"#
            .write(toFile: app + "/app.json", atomically: true, encoding: .utf8)
        let ci = try sandbox.multipack(["ci", app])
        #expect(ci.status == 0, "\(ci.all)")
        #expect(ci.stdout.contains("0\nseen last x\n"), "\(ci.all)")
    }

    /// The buildpacks run as the same user as multipack's stages inside: one that blocks the
    /// stages' record (`/tmp/multipack/outcome.json`) made `build` exit 0 having kept nothing and
    /// said nothing; one that left a sparse file of gigabytes there had it read whole (4.2 GB of
    /// memory for 2 GB).
    @Test(arguments: [
        "chmod 500 /tmp/multipack", "truncate -s 3G /tmp/multipack/outcome.json; chmod 500 /tmp/multipack",
    ])
    func aBuildpackThatBlocksTheStagesRecordFailsTheBuild(compile: String) throws {
        let sandbox = try SandboxWorld("hostile-outcome", runner: .caller)
        let app = try Self.inlineApp(sandbox, compile: compile)
        let (build, kilobytes) = try Self.measured(sandbox, ["build", app])
        #expect(build.status == 1, "\(build.all)")
        #expect(build.stderr.contains("The build ended without saying how it went"), "\(build.stderr)")
        #expect(kilobytes < 1 << 20, "multipack took \(kilobytes) KB")
        #expect(try FileManager.default.contentsOfDirectory(atPath: sandbox.world.tmp).isEmpty)
    }

    /// A build without namespaces may write into ENV_DIR, which `run` reads back as the build's
    /// config vars: a sparse file of gigabytes there was read whole. A file larger than config
    /// vars take is no config var.
    @Test func runReadsNoHugeConfigVarABuildpackLeft() throws {
        let sandbox = try SandboxWorld("hostile-env-dir", runner: .caller, caller: ["MULTIPACK_SANDBOX": "off"])
        let app = try Self.inlineApp(sandbox, compile: "truncate -s 3G \"$3/HUGE\"; echo -n small > \"$3/SMALL\"")
        let build = try sandbox.multipack(["build", app])
        #expect(build.status == 0, "\(build.all)")
        let (run, kilobytes) = try Self.measured(
            sandbox, ["run", app, "--", "bash", "-c", "echo \"${HUGE-unset} $SMALL\""])
        #expect(run.status == 0 && run.stdout == "unset small\n", "\(run.all)")
        #expect(kilobytes < 1 << 20, "multipack took \(kilobytes) KB")
    }

    /// An add-on or a buildpack URL of app.json is echoed on the user's terminal: its escape
    /// sequences are shown, never sent.
    @Test func appJSONTextIsEchoedWithoutItsEscapes() throws {
        let sandbox = try SandboxWorld("hostile-appjson-escapes", runner: .caller)
        let app = try Self.inlineApp(sandbox, compile: "true")
        try AppJSONTests.write(
            ["environments": ["test": ["addons": ["\u{1b}]0;owned\u{7}db"], "scripts": ["test": "true"]]]], to: app)
        let ci = try sandbox.multipack(["ci", app])
        #expect(ci.status == 0, "\(ci.all)")
        #expect(ci.all.contains("Skipped the add-on \\x1b]0;owned\\x07db"), "\(ci.all)")
        try AppJSONTests.write(
            ["environments": ["test": ["buildpacks": [["url": "\u{1b}[2J\u{1b}[Hx y"]], "scripts": ["test": "true"]]]],
            to: app)
        let build = try sandbox.multipack(["ci", app])
        #expect(build.status == 2, "\(build.all)")
        #expect(build.stderr.contains("`\\x1b[2J\\x1b[Hx y`"), "\(build.stderr)")
        #expect(!ci.all.contains("\u{1b}") && !build.all.contains("\u{1b}"))
    }

    /// argument-parser's time grows with the square of the words it is given: a one-off command
    /// of 20,000 words waited about 70 s to start, and 8,000 `-e` took 72 s to be refused.
    @Test func aOneOffOfManyWordsStartsAtOnceAndTooManyOptionsAreRefused() throws {
        let sandbox = try SandboxWorld("hostile-many-words", runner: .caller)
        let app = try Self.inlineApp(sandbox, compile: "true")
        #expect(try sandbox.multipack(["build", app]).status == 0)
        let words = (1...20_000).map(String.init)
        let start = ContinuousClock.now
        let run = try sandbox.multipack(["run", app, "--", "bash", "-c", "echo $# ${20000}", "x"] + words)
        #expect(start.duration(to: .now) < .seconds(30))
        #expect(run.status == 0 && run.stdout == "20000 20000\n", "\(run.stderr)")
        let options = try sandbox.multipack(
            ["build", app] + Array(repeating: ["-e", "A=1"], count: 4000).flatMap { $0 })
        #expect(options.status == 2 && options.stderr.contains("it takes at most 1024"), "\(options.stderr)")
    }

    /// The binary's output and its largest resident size in kilobytes (GNU time's %M).
    static func measured(_ sandbox: SandboxWorld, _ arguments: [String]) throws -> (Output, Int) {
        let output = try Shell.run(
            "/usr/bin/time", ["-f", "maxrss %M", Repo.binary] + arguments, in: sandbox.world.temp.path,
            environment: sandbox.world.environment.merging(sandbox.caller) { $1 })
        let line = output.stderr.split(separator: "\n").last { $0.hasPrefix("maxrss ") } ?? ""
        return (output, Int(line.dropFirst("maxrss ".count)) ?? .max)
    }

    /// A Procfile a build leaves is read by multipack as the caller: a sparse file of a gigabyte
    /// took 94 s and 2.1 GB of memory. Past 1 MB it is refused, and the build fails.
    @Test func aHugeProcfileFailsTheBuild() throws {
        let sandbox = try SandboxWorld("hostile-procfile", runner: .caller)
        let app = try Self.inlineApp(sandbox, compile: "truncate -s 1G Procfile")
        let build = try sandbox.multipack(["build", app])
        #expect(build.status == 1, "\(build.all)")
        #expect(build.stderr.contains("Procfile is larger than 1.0 MB"), "\(build.stderr)")
        #expect(build.all.contains("No build of \(app) is kept"), "\(build.all)")
    }

    /// A Procfile of 50,000 types (under 1 MB) took 49 s to build and 49 s to start one type: every
    /// type was looked for among all the others. The last line of a type given twice wins.
    @Test func aProcfileOfManyTypesIsReadInOnePass() throws {
        let sandbox = try SandboxWorld("hostile-procfile-types", runner: .caller)
        let lines = (0..<50_000).map { "t\($0): echo \($0)\n" }.joined() + "t7: echo again\n"
        let app = try Self.inlineApp(sandbox, compile: "true", files: ["Procfile": lines])
        let build = try sandbox.multipack(["build", app])
        #expect(build.status == 0, "\(build.all)")
        let last = try sandbox.multipack(["run", app, "t49999"])
        #expect(last.status == 0 && last.stdout == "49999\n", "\(last.all)")
        let twice = try sandbox.multipack(["run", app, "t7"])
        #expect(twice.stdout == "again\n", "\(twice.all)")
    }

    /// A multipack a local build starts (every verb inside the namespace) has a watchdog of its
    /// own, which became its parent's orphan: about one build in five warned that
    /// `multipack-watch` was a process the compile left running.
    @Test func theWatchdogsOfTheStagesAreNeverLeftovers() throws {
        let sandbox = try SandboxWorld("hostile-watchdog", runner: .caller)
        let app = try Self.inlineApp(sandbox, compile: "true")
        for attempt in 1...12 {
            let build = try sandbox.multipack(["build", app])
            #expect(build.status == 0, "\(build.all)")
            #expect(!build.stderr.contains("left a process running"), "build \(attempt): \(build.stderr)")
        }
    }

    /// A one-off command that puts its terminal in raw mode and reads no key while the user keeps
    /// typing (a paste): the pty's input queue fills, and the relay waited on it for ever, after
    /// the command had ended too; SIGTERM and Ctrl-C could not end `run`.
    @Test(arguments: ["bubblewrap", "off"])
    func aCommandThatReadsNoKeysDuringAPasteStillEnds(backend: String) throws {
        let sandbox = try SandboxWorld(
            "hostile-pty-paste-\(backend)", runner: .caller, caller: ["MULTIPACK_SANDBOX": backend])
        let app = try Self.inlineApp(sandbox, compile: "true")
        #expect(try sandbox.multipack(["build", app]).status == 0)
        let driver = sandbox.world.temp.path + "/paste.py"
        try Self.pasteDriver.write(toFile: driver, atomically: true, encoding: .utf8)
        let run = try Shell.run(
            "python3",
            [driver, Repo.binary, "run", app, "--", "bash", "-c", "stty raw -echo; sleep 3; echo; echo SLEPT"],
            environment: sandbox.world.environment.merging(sandbox.caller) { $1 })
        #expect(run.stdout.contains("SLEPT"), "\(run.all)")
        #expect(run.stdout.contains("EXIT 0"), "\(run.all)")
        #expect(!run.stdout.contains("HUNG"), "\(run.all)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: sandbox.world.tmp).isEmpty)
    }

    /// Starts a command on a pty and types without pause (never waiting for the command to read)
    /// until it ends; one that has not ended 60 s later is killed and reported HUNG.
    static let pasteDriver = #"""
        import os, pty, select, signal, sys, time
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(sys.argv[1], sys.argv[1:])
        os.set_blocking(fd, False)
        out, keys, status = b"", b"x" * 4096, None
        deadline = time.time() + 60
        while time.time() < deadline and status is None:
            select.select([fd], [fd], [], 0.05)
            try:
                out += os.read(fd, 65536)
            except (BlockingIOError, OSError):
                pass
            try:
                os.write(fd, keys)
            except (BlockingIOError, OSError):
                pass
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status = os.waitstatus_to_exitcode(code)
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            print("HUNG")
        print(out.decode(errors="replace").replace("x", ""))
        print("EXIT", status)
        """#
}
