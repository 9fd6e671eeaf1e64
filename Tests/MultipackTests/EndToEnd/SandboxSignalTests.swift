import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// SIGTERM to `multipack build` while a child compiles inside the namespace: found with the real
/// Node.js and Python buildpacks (a stop during pip), where bubblewrap died of the signal at once
/// and took the inner multipack with it, so the build blamed bubblewrap and kept a build directory
/// whose `bin/post_compile` was still hidden.
@Suite struct SandboxSignalTests {
    @Test(arguments: ["bubblewrap", "direct", "off"])
    func stopDuringACompileNamesTheChildAndPutsTheHooksBack(sandbox: String) throws {
        let world = try LocalWorld("sandbox-signal-\(sandbox)")
        let app = try world.app("plain", buildpacks: ["slow"])
        try FileManager.default.createDirectory(atPath: app + "/bin", withIntermediateDirectories: true)
        let hook = "#!/usr/bin/env bash\necho post_compile ran\n"
        try hook.write(toFile: app + "/bin/post_compile", atomically: true, encoding: .utf8)

        let (process, output) = try Self.startSlowBuild(world, app, sandbox: sandbox)
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        try #require(output().contains("slow compile started"), "\(output())")
        // What the slow child started, listed before the build directory goes with the build.
        let sleeps = world.temp.path + "/slow-sleeps"
        try FileManager.default.copyItem(atPath: try Self.runningBuild(world) + "/slow-sleeps", toPath: sleeps)
        kill(process.processIdentifier, SIGTERM)
        let sent = Date()
        while process.isRunning && Date().timeIntervalSince(sent) < 10 { usleep(20_000) }
        #expect(Date().timeIntervalSince(sent) <= 5, "multipack build took more than 5 s to stop")
        process.waitUntilExit()
        #expect(process.terminationStatus == 128 + SIGTERM, "\(output())")

        let text = output()
        #expect(text.contains("The build was stopped by SIGTERM"), "\(text)")
        #expect(text.contains("Slow (fixture)"), "\(text)")
        #expect(!text.contains("namespace could not be set up"), "\(text)")

        // An interrupted build is not kept (SPEC §12): there was none before, there is none now;
        // the app's own hook is untouched.
        #expect(text.contains("No build of \(app) is kept: none has succeeded yet."), "\(text)")
        let apps = world.cacheHome + "/multipack/apps"
        let state = try #require(try FileManager.default.contentsOfDirectory(atPath: apps).first)
        #expect(try FileManager.default.contentsOfDirectory(atPath: apps + "/" + state).sorted() == [".lock", "cache"])
        #expect(try String(contentsOfFile: app + "/bin/post_compile", encoding: .utf8) == hook)
        // What the slow child started is gone, and TMPDIR is empty.
        #expect(survivingSleeps(listedIn: sleeps).isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: world.tmp).isEmpty)
    }
}

extension SandboxSignalTests {
    /// Starts `multipack build APP` with the given maker and waits (up to 60 s) for its slow child
    /// to begin compiling: the process, and a reader of its log.
    static func startSlowBuild(_ world: LocalWorld, _ app: String, sandbox: String) throws -> (Process, () -> String) {
        let log = world.temp.path + "/build.log"
        let process = try Repo.start(
            ["build", app], environment: world.environment.merging(["MULTIPACK_SANDBOX": sandbox]) { $1 }, log: log)
        let output = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        let started = Date()
        while process.isRunning && !output().contains("slow compile started") && Date().timeIntervalSince(started) < 60
        {
            usleep(20_000)
        }
        return (process, output)
    }

    /// The build directory of the build running now (`/tmp/build_<hex>` inside), once its
    /// slow child wrote the list of what it started.
    static func runningBuild(_ world: LocalWorld) throws -> String {
        let apps = world.cacheHome + "/multipack/apps"
        let state = try #require(try FileManager.default.contentsOfDirectory(atPath: apps).first)
        let tmp = apps + "/" + state + "/work/tmp"
        let build = try #require(
            try FileManager.default.contentsOfDirectory(atPath: tmp).first { $0.hasPrefix("build_") })
        let started = Date()
        while !FileManager.default.fileExists(atPath: tmp + "/" + build + "/slow-sleeps")
            && Date().timeIntervalSince(started) < 60
        {
            usleep(20_000)
        }
        return tmp + "/" + build
    }

    /// SIGTERM to `multipack run` reaches a command that has no handler of its own (`sleep`), as on
    /// a dyno: the command is not the first process of the PID namespace, where the kernel would
    /// drop the signal and only the grace period's SIGKILL would end it, two seconds later.
    @Test(arguments: ["bubblewrap", "direct"])
    func sigtermEndsARunCommandAtOnce(sandbox: String) throws {
        let world = try LocalWorld("sandbox-run-term-\(sandbox)")
        let app = try world.app("plain", buildpacks: ["probe"])
        let environment = world.environment.merging(["MULTIPACK_SANDBOX": sandbox]) { $1 }
        #expect(try world.multipack(["build", app], extra: ["MULTIPACK_SANDBOX": sandbox]).status == 0)
        let log = world.temp.path + "/run.log"
        let process = try Repo.start(
            ["run", app, "--", "sh", "-c", "echo run-started; exec sleep 61"], environment: environment, log: log)
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        let output = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        let started = Date()
        while process.isRunning && !output().contains("run-started") && Date().timeIntervalSince(started) < 30 {
            usleep(20_000)
        }
        try #require(output().contains("run-started"), "\(output())")
        usleep(100_000)
        kill(process.processIdentifier, SIGTERM)
        let sent = Date()
        process.waitUntilExit()
        #expect(Date().timeIntervalSince(sent) < 1.5, "\(output())")
        #expect(process.terminationStatus != 0)
    }

    /// SIGKILL, which multipack cannot catch, to `multipack build` while a child compiles in the
    /// namespace: it has a PID namespace of its own, whichever makes it, so everything the child
    /// started (its background helper included) dies with it.
    @Test(arguments: ["bubblewrap", "direct"])
    func sigkillOfABuildLeavesNoProcessOfItsChildren(sandbox: String) throws {
        let world = try LocalWorld("sandbox-sigkill-\(sandbox)")
        let app = try world.app("plain", buildpacks: ["slow"])
        let (process, output) = try Self.startSlowBuild(world, app, sandbox: sandbox)
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        try #require(output().contains("slow compile started"), "\(output())")
        // The build runs in the state's work/tmp/build_<hex> (/tmp/build_<hex> inside).
        let sleeps = try Self.runningBuild(world) + "/slow-sleeps"
        kill(process.processIdentifier, SIGKILL)
        // The kernel ends a PID namespace's processes once its first one is gone: a moment.
        let killed = Date()
        while !survivingSleeps(listedIn: sleeps, kill: false).isEmpty && Date().timeIntervalSince(killed) < 5 {
            usleep(50_000)
        }
        #expect(survivingSleeps(listedIn: sleeps).isEmpty)
        process.waitUntilExit()
    }
}

extension SandboxSignalTests {
    /// A stop that comes before the namespace exists (while the previous build is put aside and the
    /// app copied) ends the build at once: no child runs, whatever the previous build's size. The
    /// previous build stays kept, and what a stopped build left aside the next one removes.
    @Test(arguments: ["bubblewrap", "direct"])
    func stopBeforeTheNamespaceRunsNoChildAndTheNextBuildRemovesWhatWasLeft(sandbox: String) throws {
        let world = try LocalWorld("sandbox-early-stop-\(sandbox)")
        let child = try scriptedChild(
            "modes", in: world.temp, detect: "sleep 1; echo Modes",
            compile: """
                case "$(cat "$3/MODE" 2>/dev/null)" in
                  many) mkdir "$1/many" && cd "$1/many" && seq 1 20000 | xargs touch ;;
                  slow) touch "$1/compiled"; sleep 300 ;;
                esac
                """)
        let app = try world.app("plain", buildpacks: nil)
        try (child + "\n").write(toFile: app + "/.buildpacks", atomically: true, encoding: .utf8)
        let environment = world.environment.merging(["MULTIPACK_SANDBOX": sandbox]) { $1 }
        let first = try Shell.run(Repo.binary, ["build", app, "-e", "MODE=many"], environment: environment)
        #expect(first.status == 0, "\(first.all)")

        let log = world.temp.path + "/build.log"
        let process = try Repo.start(["build", app, "-e", "MODE=slow"], environment: environment, log: log)
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        // As soon as multipack takes SIGTERM (before that, the signal would just kill it).
        let started = Date()
        while process.isRunning && !catchesSIGTERM(process.processIdentifier) && Date().timeIntervalSince(started) < 30
        {
            usleep(5_000)
        }
        kill(process.processIdentifier, SIGTERM)
        let sent = Date()
        while process.isRunning && Date().timeIntervalSince(sent) < 15 { usleep(20_000) }
        #expect(Date().timeIntervalSince(sent) <= 5, "multipack build took more than 5 s to stop")
        process.waitUntilExit()
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(process.terminationStatus == 128 + SIGTERM, "\(text)")
        #expect(text.contains("The build was stopped by SIGTERM"), "\(text)")
        let apps = world.cacheHome + "/multipack/apps"
        let state = apps + "/" + (try #require(try FileManager.default.contentsOfDirectory(atPath: apps).first))
        #expect(
            !FileManager.default.fileExists(atPath: state + "/kept/build/compiled"), "a child compiled after the stop")
        #expect(FileManager.default.fileExists(atPath: state + "/kept/build/many/20000"), "the first build is kept")

        let next = try Shell.run(Repo.binary, ["build", app], environment: environment)
        #expect(next.status == 0, "\(next.all)")
        let left = try FileManager.default.contentsOfDirectory(atPath: state).filter { $0.hasPrefix(".replaced-") }
        #expect(left.isEmpty, "\(left)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: world.tmp).isEmpty)
    }
}

/// Whether the process has a handler for SIGTERM (its `SigCgt` mask in /proc).
func catchesSIGTERM(_ pid: Int32) -> Bool {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("SigCgt:") }),
        let mask = UInt64(line.dropFirst("SigCgt:".count).trimmingCharacters(in: .whitespaces), radix: 16)
    else { return false }
    return mask & (1 << (UInt64(SIGTERM) - 1)) != 0
}
