import Foundation
import Testing

/// SPEC §5: what a SIGKILLed multipack leaves in TMPDIR, in the cache's staging or, unpacking a
/// stack root, in the user's cache (it cannot clean up after itself) is swept by the next build;
/// what a live one holds is not.
@Suite(.serialized) struct SweepTests {
    enum Killed: String, CaseIterable, CustomTestStringConvertible {
        case slowChild, cloneIntoTheCache, cloneWithoutACache, lock, run, unpackingAStackRoot
        var testDescription: String { rawValue }
    }

    /// What multipack keeps in TMPDIR, in the cache's staging and among the unpacked stack roots.
    static func leftovers(tmp: String, cache: String, cacheHome: String = "/nonexistent") -> [String] {
        let fm = FileManager.default
        return ((try? fm.contentsOfDirectory(atPath: tmp)) ?? [])
            + ((try? fm.contentsOfDirectory(atPath: cache + "/.multipack/staging")) ?? []).map { "staging/" + $0 }
            + ((try? fm.contentsOfDirectory(atPath: cacheHome + "/multipack/stacks")) ?? []).map { "stacks/" + $0 }
    }

    @Test(arguments: Killed.allCases) func whatASIGKILLedCommandLeftIsSweptByTheNextBuild(_ killed: Killed) throws {
        let temp = try TempDir("sweep")
        let ready = temp.path + "/ready"
        let sleeperPID = temp.path + "/sleeper.pid"
        // `$((6*7))` keeps the marker out of the command line that `run` echoes.
        let sleeper = "echo $$ > \(sleeperPID); touch \(ready); echo $((6*7))-sleeping; exec sleep 1000"
        let server = try LoopbackHTTPServer(routes: [
            "/stalled.tgz": .stall(body: [UInt8](repeating: 0x1f, count: 100_000), after: 1000)
        ])
        defer { server.stop() }
        let mp = try Multipack(in: temp)
        let cache = temp.sub("cache")
        let world = try LocalWorld("sweep-next")
        let stacks = world.cacheHome + "/multipack/stacks"
        var command: (executable: String, arguments: [String], environment: [String: String]) = ("", [], [:])
        switch killed {
        case .slowChild:
            let app = try App(nil, in: temp, buildpacks: try scriptedChild("slow", in: temp, compile: sleeper) + "\n")
            command = (mp.dir + "/bin/compile", [app.build, app.cache, app.env], [:])
        case .cloneIntoTheCache, .cloneWithoutACache:
            // git runs the post-checkout hook inside the clone, in multipack's staging directory.
            try temp.write("hooks/post-checkout", "#!/bin/sh\n\(sleeper)\n", executable: true)
            let app = try App(nil, in: temp, buildpacks: "file://" + (try gitChild("probe", in: temp)) + "\n")
            // A CACHE_DIR that is a file: the build runs without a cache, its clone in TMPDIR.
            let cacheDir = killed == .cloneIntoTheCache ? app.cache : temp.path + "/not-a-directory"
            if killed == .cloneWithoutACache { try temp.write("not-a-directory", "") }
            command = (
                mp.dir + "/bin/compile", [app.build, cacheDir, app.env],
                [
                    "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "core.hooksPath",
                    "GIT_CONFIG_VALUE_0": temp.path + "/hooks",
                ]
            )
        case .lock:
            let app = try App(nil, in: temp, buildpacks: server.url("/stalled.tgz") + "\n")
            command = (Repo.binary, ["lock", app.build], [:])
        case .run:
            try temp.write("slug/app/Procfile", "web: true\n")
            let tar = try Shell.run("tar", ["czf", temp.path + "/slug.tgz", "-C", temp.path + "/slug", "./app"])
            #expect(tar.status == 0, "\(tar.all)")
            command = (Repo.binary, ["run", temp.path + "/slug.tgz", "--", "sh", "-c", sleeper], [:])
        case .unpackingAStackRoot:
            // 900 MB of zeros: tar is still writing it when the build is killed.
            let made = try Shell.run(
                "python3", [Repo.fixtures + "/signal-inputs.py", "archive", temp.path + "/root.tgz"])
            #expect(made.status == 0, "\(made.all)")
            let app = try world.app("plain", buildpacks: ["probe"], name: "unpacking")
            command = (
                Repo.binary, ["build", app, "--stack-root", temp.path + "/root.tgz"], world.environment
            )
        }
        let tmp = temp.sub("tmp")
        let output = temp.path + "/output.txt"
        let pid = try spawnInBackground(
            command.executable, command.arguments, environment: command.environment.merging(["TMPDIR": tmp]) { $1 },
            output: output)
        func log() -> String { (try? String(contentsOfFile: output, encoding: .utf8)) ?? "" }
        var started = false
        for _ in 0..<3000 where !started {
            started =
                FileManager.default.fileExists(atPath: ready) || log().contains("42-sleeping")
                || server.requestCount("/stalled.tgz") > 0
                || ((try? FileManager.default.contentsOfDirectory(atPath: stacks)) ?? []).contains {
                    $0.contains(".partial-")
                }
            usleep(20_000)
        }
        #expect(started, "\(log())")
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        // git's hook outlives git: it is the test's to stop.
        _ = survivors([sleeperPID])
        let left = Self.leftovers(tmp: tmp, cache: cache, cacheHome: world.cacheHome)
        #expect(left.contains { $0.contains("\(pid)-") }, "SIGKILL left nothing of \(pid) to sweep: \(left)")

        let app = try world.app("plain", buildpacks: ["probe"])
        let next = try world.multipack(["build", app, "--cache", cache], extra: ["TMPDIR": tmp])
        #expect(next.status == 0, "\(next.all)")
        #expect(Self.leftovers(tmp: tmp, cache: cache, cacheHome: world.cacheHome).isEmpty, "\(next.all)")
    }

    /// A pid that was just used and is gone.
    static func deadPID() throws -> pid_t {
        let gone = Process()
        gone.executableURL = URL(fileURLWithPath: "/bin/true")
        try gone.run()
        gone.waitUntilExit()
        return gone.processIdentifier
    }

    /// Locks `path` as its owner would; the descriptor holds the lock until it is closed.
    static func lock(_ path: String) -> Int32 {
        let descriptor = open(path, O_RDONLY)
        flock(descriptor, LOCK_EX | LOCK_NB)
        return descriptor
    }

    /// The slug is written beside its final name and renamed: what a build killed while packing
    /// left there goes with the next pack, even under a live pid; a locked one's stays.
    @Test func aHalfWrittenSlugIsSweptByTheNextBuild() throws {
        let world = try LocalWorld("sweep-slug")
        let out = world.temp.sub("out")
        let dead = try Self.deadPID()
        let names =
            ["aaaaaa", "bbbbbb"].map { "slug.tgz.partial-\(dead)-\($0)" } + ["slug.tgz.partial-\(getpid())-cccccc"]
        for name in names { try world.temp.write("out/" + name, "half a slug") }
        let held = Self.lock(out + "/" + names[1])
        defer { close(held) }
        let build = try world.multipack([
            "build", try world.app("plain", buildpacks: ["probe"]), "--slug", out + "/slug.tgz",
        ])
        #expect(build.status == 0, "\(build.all)")
        let left = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.contains(".partial-") }
        #expect(left == [names[1]])
    }

    /// Every file multipack replaces (the combined export, the build's record, a cache record, a
    /// lock file, the package) is written beside its name and renamed: what a killed write left
    /// there goes with the next write of that file; a writer's that holds its lock stays.
    @Test func aHalfWrittenExportIsSweptByTheNextCompile() throws {
        let temp = try TempDir("sweep-export")
        let app = try App(nil, in: temp, buildpacks: try scriptedChild("quick", in: temp) + "\n")
        let mp = try Multipack(in: temp)
        let dead = try Self.deadPID()
        let names = ["export.partial-\(dead)-aaaaaa", "export.partial-\(getpid())-bbbbbb"]
        for name in names {
            try "half an export".write(toFile: mp.dir + "/" + name, atomically: false, encoding: .utf8)
        }
        let held = Self.lock(mp.dir + "/" + names[1])
        defer { close(held) }
        let compile = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(compile.status == 0, "\(compile.all)")
        let left = try FileManager.default.contentsOfDirectory(atPath: mp.dir).filter { $0.contains(".partial-") }
        #expect(left == [names[1]])
        #expect(FileManager.default.fileExists(atPath: mp.dir + "/export"))
    }

    /// A replaced file is swapped out of the way and removed on another thread; anything else in
    /// its place is left to `rename`: a directory fails the write (and keeps its contents), a
    /// symlink is replaced without following it. Neither is carried off under a partial's name.
    @Test func whatIsNotAFileWhereTheExportGoesIsNotCarriedOff() throws {
        let temp = try TempDir("sweep-export-kinds")
        let app = try App(nil, in: temp, buildpacks: try scriptedChild("quick", in: temp) + "\n")
        let mp = try Multipack(in: temp)
        try temp.write("elsewhere/keep", "kept\n")
        try FileManager.default.createDirectory(atPath: mp.dir + "/export", withIntermediateDirectories: false)
        try "mine\n".write(toFile: mp.dir + "/export/inside", atomically: false, encoding: .utf8)
        let refused = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(refused.status == 1, "\(refused.all)")
        #expect(try String(contentsOfFile: mp.dir + "/export/inside", encoding: .utf8) == "mine\n")

        try FileManager.default.removeItem(atPath: mp.dir + "/export")
        try FileManager.default.createSymbolicLink(
            atPath: mp.dir + "/export", withDestinationPath: temp.path + "/elsewhere/keep")
        let replaced = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(replaced.status == 0, "\(replaced.all)")
        let attributes = try FileManager.default.attributesOfItem(atPath: mp.dir + "/export")
        #expect(attributes[.type] as? FileAttributeType == .typeRegular)
        #expect(try String(contentsOfFile: temp.path + "/elsewhere/keep", encoding: .utf8) == "kept\n")
        let left = try FileManager.default.contentsOfDirectory(atPath: mp.dir).filter { $0.contains(".partial-") }
        #expect(left == [])
    }

    /// Only the lock keeps an entry: an unlocked one goes even when a live process has its pid,
    /// since a build in a PID namespace of its own always has the same small pid there.
    @Test func aDirectoryWhoseOwnerHoldsItsLockIsKept() throws {
        let temp = try TempDir("sweep-kept")
        let tmp = temp.sub("tmp")
        let app = try App(nil, in: temp, buildpacks: try scriptedChild("quick", in: temp) + "\n")
        let staging = temp.sub("cache/.multipack/staging")
        let dead = try Self.deadPID()
        let live = getpid()
        let names = [
            "multipack-children-\(dead)-aaaaaa", "multipack-run-\(dead)-bbbbbb", "multipack-clone-\(live)-cccccc",
            "multipack-lock-\(dead)-dddddd", "multipack-test-1-eeeeee", "other-\(dead)-ffffff",
        ]
        for name in names { _ = temp.sub("tmp/" + name) }
        for name in ["\(dead)-gggggg", "\(dead)-hhhhhh"] { _ = temp.sub("cache/.multipack/staging/" + name) }
        // Held as a process in another PID namespace would hold it: its pid means nothing here.
        let locks = [tmp + "/multipack-lock-\(dead)-dddddd", staging + "/\(dead)-hhhhhh"].map(Self.lock)
        // A killed build that ran as pid 2 of its own PID namespace: here, pid 2 is alive.
        _ = temp.sub("cache/.multipack/staging/2-iiiiii")

        let mp = try Multipack(in: temp)
        let first = try mp.shim("compile", [app.build, app.cache, app.env], environment: ["TMPDIR": tmp])
        #expect(first.status == 0, "\(first.all)")
        #expect(
            Self.leftovers(tmp: tmp, cache: app.cache).sorted() == [
                "multipack-lock-\(dead)-dddddd", "multipack-test-1-eeeeee", "other-\(dead)-ffffff",
                "staging/\(dead)-hhhhhh",
            ])

        for descriptor in locks { close(descriptor) }
        let second = try mp.shim("compile", [app.build, app.cache, app.env], environment: ["TMPDIR": tmp])
        #expect(second.status == 0, "\(second.all)")
        #expect(
            Self.leftovers(tmp: tmp, cache: app.cache).sorted() == ["multipack-test-1-eeeeee", "other-\(dead)-ffffff"])
    }

    /// The sweep of TMPDIR waits for the fetch (whose copies keep the cores busy), so a build
    /// whose fetch fails sweeps before it ends.
    @Test func aBuildWhoseFetchFailsStillSweeps() throws {
        let temp = try TempDir("sweep-fetch-fails")
        let tmp = temp.sub("tmp")
        let app = try App(nil, in: temp, buildpacks: "file:///no-such-directory/bp.tgz\n")
        let dead = try Self.deadPID()
        for name in ["multipack-children-\(dead)-aaaaaa", "multipack-clone-\(dead)-bbbbbb"] {
            _ = temp.sub("tmp/" + name + "/1/bin")
        }
        let mp = try Multipack(in: temp)
        let compile = try mp.shim("compile", [app.build, app.cache, app.env], environment: ["TMPDIR": tmp])
        #expect(compile.status == 1, "\(compile.all)")
        #expect(compile.all.contains("Failed to fetch buildpack [1/1]"), "\(compile.all)")
        #expect(Self.leftovers(tmp: tmp, cache: app.cache) == [])
    }
}

/// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34), which Swift's Glibc module does not declare.
private let addCloseFrom: @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32 = {
    guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else {
        fatalError("glibc has no posix_spawn_file_actions_addclosefrom_np (2.34 or later is needed)")
    }
    return unsafeBitCast(
        symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
}()

/// Starts a command with its output to a file, reaped by the caller's `waitpid` (not Foundation's
/// Process, which may never notice the end of a process that is SIGKILLed while its descendants live).
func spawnInBackground(_ executable: String, _ arguments: [String], environment: [String: String], output: String)
    throws -> pid_t
{
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    // Nothing else of this test process: a file another test is writing (which would then be
    // "busy" when executed) or a lock it holds (which would then outlive its close) stays here.
    try #require(addCloseFrom(&actions, 3) == 0)
    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    let envp = Multipack.environment(environment).map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
        argv.forEach { free($0) }
        envp.forEach { free($0) }
    }
    var pid: pid_t = 0
    let code = posix_spawn(&pid, executable, &actions, nil, argv, envp)
    guard code == 0 else { throw TestFailure("cannot start \(executable): errno \(code)") }
    return pid
}
