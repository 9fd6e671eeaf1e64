import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// SPEC §11's exit codes, for every command: 128 + N after signal N (130 after Ctrl-C, as shells
/// report it), 2 for bad input, 1 for a failure; `bin/report` never fails.
@Suite struct ExitCodeTests {
    static let stops: [(signal: Int32, code: Int32)] = [(SIGINT, 130), (SIGTERM, 143)]

    /// Waits up to 60 s for `text` in the log, sends `signal`, and returns the exit status.
    static func stop(_ process: Process, once text: String, in log: () -> String, with signal: Int32) throws -> Int32 {
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        let started = Date()
        while process.isRunning && !log().contains(text) && Date().timeIntervalSince(started) < 60 { usleep(20_000) }
        try #require(log().contains(text), "\(log())")
        kill(process.processIdentifier, signal)
        let sent = Date()
        while process.isRunning && Date().timeIntervalSince(sent) < 10 { usleep(20_000) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    @Test(arguments: stops) func compile(stop: (signal: Int32, code: Int32)) throws {
        let temp = try TempDir("exit-compile")
        let app = try App(nil, in: temp, buildpacks: Repo.fixtures + "/buildpacks/slow\n")
        let build = try BackgroundCompile(try Multipack(in: temp), app, temp: temp)
        let status = try Self.stop(build.process, once: "slow compile started", in: { build.output }, with: stop.signal)
        #expect(status == stop.code, "\(build.output)")
        #expect(survivingSleeps(listedIn: app.build + "/slow-sleeps").isEmpty)
    }

    @Test(arguments: ["build", "ci"], stops)
    func localBuild(command: String, stop: (signal: Int32, code: Int32)) throws {
        let world = try LocalWorld("exit-\(command)")
        let app = try world.app("plain", buildpacks: ["slow"])
        let log = world.temp.path + "/build.log"
        let process = try Repo.start([command, app], environment: world.environment, log: log)
        let output = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        let status = try Self.stop(process, once: "slow compile started", in: output, with: stop.signal)
        #expect(status == stop.code, "\(output())")
    }

    @Test(arguments: stops) func run(stop: (signal: Int32, code: Int32)) throws {
        let world = try LocalWorld("exit-run")
        let app = try world.app("plain", buildpacks: ["probe"])
        #expect(try world.multipack(["build", app]).status == 0)
        let log = world.temp.path + "/run.log"
        // The command handles the signal and ends well: run still says it was stopped.
        let process = try Repo.start(
            ["run", app, "--", "bash", "-c", "trap 'exit 0' INT TERM; echo run-started; sleep 61 & wait"],
            environment: world.environment, log: log)
        let output = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        let status = try Self.stop(process, once: "run-started", in: output, with: stop.signal)
        #expect(status == stop.code, "\(output())")
    }

    /// A line that is clearly a path names a directory: a missing one is bad input, said before
    /// anything is fetched; a bare `a/b` that is not a directory stays a registry name.
    @Test func aMissingDirectoryIsBadInput() throws {
        let temp = try TempDir("exit-missing-dir")
        let mp = try Multipack(in: temp)
        for (index, line) in ["./vendor/missing", "../no-such-buildpack", "/no/such/buildpack", "./missing-repo#v1"]
            .enumerated()
        {
            let app = try App(nil, in: temp, buildpacks: line + "\n", name: "app-\(index)")
            let compile = try mp.shim("compile", [app.build, app.cache, app.env])
            #expect(compile.status == 2, "\(line): \(compile.all)")
            #expect(compile.stderr.contains("Line 1: \(line)"), "\(compile.all)")
            #expect(compile.stderr.contains("names a directory that does not exist"), "\(compile.all)")
            #expect(!compile.all.contains("Fetching"))
        }
        let world = try LocalWorld("exit-missing-build")
        let app = try world.app("plain", buildpacks: nil)
        try "./vendor/missing\n".write(toFile: app + "/.buildpacks", atomically: true, encoding: .utf8)
        let build = try world.multipack(["build", app])
        #expect(build.status == 2, "\(build.all)")
        #expect(build.stderr.contains("names a directory that does not exist"), "\(build.all)")
    }

    @Test func reportOfAnAppNeverBuiltFailsAndBinReportNever() throws {
        let world = try LocalWorld("exit-report")
        let app = try world.app("plain", buildpacks: ["probe"])
        let never = try world.multipack(["report", app])
        #expect(never.status == 1, "\(never.all)")
        #expect(never.stderr.contains("has no local build to report on"), "\(never.all)")
        #expect(never.stdout.isEmpty)

        #expect(try world.multipack(["build", app]).status == 0)
        let report = try world.multipack(["report", app])
        #expect(report.status == 0, "\(report.all)")
        #expect(report.stdout.contains("outcome: \"succeeded\""), "\(report.stdout)")
        #expect(report.stdout.contains("slug: \"\(world.cacheHome)/multipack/apps/"), "\(report.stdout)")

        // bin/report of a BUILD_DIR compile never saw: a report that says so, exit 0.
        let mp = try Multipack(in: world.temp)
        let shim = try mp.shim("report", [world.temp.sub("never"), world.temp.sub("c"), world.temp.sub("e")])
        #expect(shim.status == 0 && shim.stdout.contains("outcome: \"none\""), "\(shim.all)")
        let one = try mp.shim("report", [world.temp.sub("never")])
        #expect(one.status == 0 && one.stdout.contains("outcome: \"none\""), "\(one.all)")
    }
}
