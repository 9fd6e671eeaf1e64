import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// SPEC §5, §11: a stop can come at any moment, the signal handler's first use and a child's
/// start included. SIGTERM at 200 random moments in the first 50 ms of a compile, a local build
/// and a run: each ends within 5 seconds, and leaves no process and no file in its TMPDIR.
@Suite(.serialized) struct StopAnyMomentTests {
    static let trials = 200
    /// Trials at once: each one mostly waits for its process.
    static let width = 4

    /// One command stopped at a random moment: how long it took to end after the signal, how it
    /// ended, and what it left.
    struct Trial: Sendable {
        var delay: Int
        var seconds: Double
        var status: Int32
        var survivors: [String]
        var leftInTMPDIR: [String]
        /// The last lines the command printed.
        var output: String
    }

    /// The children's scripts: detect passes, compile starts a daemon in a session of its own and
    /// sleeps; every process is marked with the trial's number (in ENV_DIR, which a child reads).
    static func child(in temp: TempDir) throws -> String {
        try temp.write("child/bin/detect", "#!/usr/bin/env bash\necho Slow\n", executable: true)
        try temp.write(
            "child/bin/compile",
            "#!/usr/bin/env bash\nmark=$(cat \"$3/TRIAL_MARK\")\n"
                + "setsid sleep \"4.$mark\" < /dev/null > /dev/null 2>&1 &\nsleep \"3.$mark\"\n",
            executable: true)
        try temp.write("child/bin/release", "#!/usr/bin/env bash\necho '--- {}'\n", executable: true)
        return temp.path + "/child"
    }

    /// Trial `index`'s own directory under `base`, with `subdirectories` in it.
    static func trialDirectory(_ base: String, _ index: Int, _ subdirectories: [String]) throws -> String {
        let dir = base + "/trial-\(index)"
        for sub in subdirectories {
            try FileManager.default.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true)
        }
        return dir
    }

    /// Runs `trials` stops of the command `prepare` makes for each (its arguments, environment and
    /// TMPDIR), `width` at a time.
    static func stopAtRandomMoments(
        _ what: String,
        prepare:
            @escaping @Sendable (_ index: Int, _ mark: String) throws -> (
                arguments: [String], environment: [String: String], tmp: String
            )
    ) throws -> [Trial] {
        let results = Mutex<[Trial]>([])
        let failures = Mutex<[String]>([])
        let next = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: width) { _ in
            while true {
                let index = next.add(1, ordering: .relaxed).oldValue
                guard index < trials else { return }
                do {
                    let mark = String(100_000 + index * 13 + Int.random(in: 0..<13))
                    let (arguments, environment, tmp) = try prepare(index, mark)
                    let trial = try stop(arguments, environment: environment, tmp: tmp, mark: mark)
                    results.withLock { $0.append(trial) }
                } catch {
                    failures.withLock { $0.append("\(what) trial \(index): \(error)") }
                }
            }
        }
        for failure in failures.withLock({ $0 }) { Issue.record(Comment(rawValue: failure)) }
        return results.withLock { $0 }
    }

    /// Starts the binary, sends SIGTERM after 0 to 50 ms, waits for it to end (SIGKILL after 30 s).
    /// Reaped by this test's own `waitpid`, so the time is the binary's, not how soon a loaded
    /// machine lets Foundation notice; its output goes beside TMPDIR, shown when a trial fails.
    static func stop(_ arguments: [String], environment: [String: String], tmp: String, mark: String) throws -> Trial {
        let output = (tmp as NSString).deletingLastPathComponent + "/output-\(mark).txt"
        let pid = try spawnInBackground(Repo.binary, arguments, environment: environment, output: output)
        let delay = Int.random(in: 0...50_000)
        usleep(UInt32(delay))
        let sent = Date()
        kill(pid, SIGTERM)
        var status: Int32 = 0
        var ended = false
        while !ended && Date().timeIntervalSince(sent) < 30 {
            let reaped = waitpid(pid, &status, WNOHANG)
            ended = reaped == pid || (reaped < 0 && errno != EINTR)
            if !ended { usleep(2_000) }
        }
        let seconds = Date().timeIntervalSince(sent)
        if !ended {
            kill(pid, SIGKILL)
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        // As Foundation's Process reports it: the exit code, or the signal that ended it.
        let exited = status & 0x7f == 0
        return Trial(
            delay: delay / 1000, seconds: seconds, status: exited ? (status >> 8) & 0xff : status & 0x7f,
            survivors: survivors(marked: mark),
            leftInTMPDIR: (try? FileManager.default.contentsOfDirectory(atPath: tmp)) ?? ["(TMPDIR is gone)"],
            output: (try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
    }

    /// Processes whose command line holds `.<mark>` (the children's sleeps, wherever they run),
    /// each killed by its pid once found. A daemon may take a moment to be stopped: looked for a
    /// few times before it counts.
    static func survivors(marked mark: String) -> [String] {
        var found: [(pid: Int32, line: String)] = []
        for attempt in 0..<3 {
            if attempt > 0 { usleep(100_000) }
            found = commandLines().filter { $0.words.contains { $0.hasSuffix("." + mark) } }.map {
                ($0.pid, $0.words.joined(separator: " "))
            }
            if found.isEmpty { return [] }
        }
        for survivor in found { kill(survivor.pid, SIGKILL) }
        return found.map(\.line)
    }

    static func check(_ what: String, _ trials: [Trial]) {
        #expect(trials.count == Self.trials, "\(what): \(trials.count) of \(Self.trials) trials ran")
        for trial in trials {
            #expect(
                trial.seconds < 5,
                "\(what) stopped after \(trial.delay) ms took \(trial.seconds) s: \(trial.output.suffix(2000))")
            #expect(trial.survivors.isEmpty, "\(what) stopped after \(trial.delay) ms left \(trial.survivors)")
            #expect(trial.leftInTMPDIR.isEmpty, "\(what) stopped after \(trial.delay) ms left \(trial.leftInTMPDIR)")
            // Ended by the stop: 128 + 15, or SIGTERM itself when it came before the handler was in
            // place. Nothing finishes before it (the child sleeps 3 s, the run's command 5 s).
            #expect([143, SIGTERM].contains(trial.status), "\(what) stopped after \(trial.delay) ms: \(trial.status)")
        }
    }

    @Test func aCompileStoppedAtAnyMomentEndsAndLeavesNothing() throws {
        let temp = try TempDir("stop-compile")
        let child = try Self.child(in: temp)
        let base = temp.path
        let trials = try Self.stopAtRandomMoments("compile") { index, mark in
            let dir = try Self.trialDirectory(base, index, ["build", "cache", "env", "tmp", "buildpack"])
            try (child + "\n").write(toFile: dir + "/build/.buildpacks", atomically: true, encoding: .utf8)
            try mark.write(toFile: dir + "/env/TRIAL_MARK", atomically: true, encoding: .utf8)
            var environment = Multipack.environment(["TMPDIR": dir + "/tmp"])
            environment["MULTIPACK_BUILDPACK_DIR"] = dir + "/buildpack"
            return (["compile", dir + "/build", dir + "/cache", dir + "/env"], environment, dir + "/tmp")
        }
        Self.check("compile", trials)
    }

    @Test func aLocalBuildStoppedAtAnyMomentEndsAndLeavesNothing() throws {
        let temp = try TempDir("stop-build")
        let child = try Self.child(in: temp)
        let base = temp.path
        let trials = try Self.stopAtRandomMoments("build") { index, mark in
            let dir = try Self.trialDirectory(base, index, ["app", "home", "xdg", "tmp"])
            try (child + "\n").write(toFile: dir + "/app/.buildpacks", atomically: true, encoding: .utf8)
            let environment = Multipack.environment([
                "HOME": dir + "/home", "XDG_CACHE_HOME": dir + "/xdg", "TMPDIR": dir + "/tmp",
                "MULTIPACK_STACK_ROOT": "/",
            ])
            return (["build", dir + "/app", "-e", "TRIAL_MARK=" + mark], environment, dir + "/tmp")
        }
        Self.check("build", trials)
    }

    @Test func aRunStoppedAtAnyMomentEndsAndLeavesNothing() throws {
        let world = try LocalWorld("stop-run")
        let app = try world.app("plain", buildpacks: nil)
        try "web: sleep 5\n".write(toFile: app + "/Procfile", atomically: true, encoding: .utf8)
        let slug = world.temp.path + "/slug.tgz"
        let built = try world.multipack([
            "build", app, "--buildpack", try Self.child(in: world.temp), "--slug", slug, "-e", "TRIAL_MARK=0",
        ])
        try #require(built.status == 0, "\(built.all)")
        let base = world.temp.path
        let home = world.environment["HOME"] ?? base
        let trials = try Self.stopAtRandomMoments("run") { index, mark in
            let dir = try Self.trialDirectory(base, index, ["tmp"])
            let environment = Multipack.environment(["HOME": home, "TMPDIR": dir + "/tmp"])
            return (["run", slug, "--", "sleep", "5." + mark], environment, dir + "/tmp")
        }
        Self.check("run", trials)
    }
}
