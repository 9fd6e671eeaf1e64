import Foundation
import Testing

/// `.buildpacks.lock` (SPEC §13): git children served over git's dumb HTTP protocol and archives,
/// both from a loopback server that counts every request, and upstream changed between builds.
struct LockWorld {
    let temp: TempDir
    let server: LoopbackHTTPServer
    let mp: Multipack
    let app: App
    /// Each build's own TMPDIR, inside the temp dir.
    let environment: [String: String]

    var served: String { temp.path + "/served" }

    /// `buildpacks` may use `{server}` for the server's URL.
    init(_ name: String, buildpacks: (String) -> String, repos: [String] = [], archives: [String: String] = [:]) throws
    {
        temp = try TempDir(name)
        try FileManager.default.createDirectory(atPath: temp.path + "/served", withIntermediateDirectories: true)
        server = try LoopbackHTTPServer(routes: [:], mounts: ["/": temp.path + "/served"])
        environment = ["TMPDIR": temp.sub("tmp"), "MULTIPACK_REGISTRY_URL": server.url("/registry")]
        mp = try Multipack(in: temp)
        app = try App(nil, in: temp, buildpacks: buildpacks(server.url("")))
        for repo in repos { try serveRepo(repo) }
        for (path, child) in archives { try serveArchive(child, at: path) }
    }

    /// The fixture child as a repository (the "upstream") and its bare copy served at /NAME.git.
    func serveRepo(_ name: String) throws {
        // `version-2` is a second repository of the `version` fixture.
        let child = String(name.prefix { $0 != "-" })
        let repo = try gitChild(child, in: temp, as: name)
        try Shell.git(["clone", "--quiet", "--bare", repo, served + "/\(name).git"], in: temp.path)
        try Shell.git(["update-server-info"], in: served + "/\(name).git")
    }

    /// A new commit on upstream's main, pushed to the served copy; returns it.
    @discardableResult
    func advance(_ name: String, version: String) throws -> String {
        let repo = temp.path + "/remotes/" + name
        try version.write(toFile: repo + "/VERSION", atomically: true, encoding: .utf8)
        try Shell.git(["commit", "--quiet", "-am", "version \(version)"], in: repo)
        if FileManager.default.fileExists(atPath: served + "/\(name).git") {
            try Shell.git(["push", "--quiet", served + "/\(name).git", "main"], in: repo)
            try Shell.git(["update-server-info"], in: served + "/\(name).git")
        }
        return try Shell.gitOutput(["rev-parse", "HEAD"], in: repo)
    }

    func commit(of name: String) throws -> String {
        try Shell.gitOutput(["rev-parse", "HEAD"], in: temp.path + "/remotes/" + name)
    }

    /// The fixture child packed as a .tgz served at `path`; `marker` changes its bytes.
    @discardableResult
    func serveArchive(_ child: String, at path: String, marker: String = "") throws -> String {
        let stage = temp.path + "/pack-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: stage, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: stage) }
        try FileManager.default.copyItem(atPath: Repo.fixtures + "/buildpacks/" + child, toPath: stage + "/bp-main")
        try marker.write(toFile: stage + "/bp-main/MARKER", atomically: true, encoding: .utf8)
        let out = served + path
        try FileManager.default.createDirectory(
            atPath: (out as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let tar = try Shell.run("tar", ["-C", stage, "-czf", out, "bp-main"])
        if tar.status != 0 { throw TestFailure(tar.all) }
        return String(try Shell.run("sha256sum", [out]).stdout.prefix(64))
    }

    func lock(_ arguments: [String] = []) throws -> Output {
        try Shell.run(Repo.binary, ["lock"] + arguments + [app.build], environment: Multipack.environment(environment))
    }

    func compile(cache: String? = nil) throws -> Output {
        try mp.shim("compile", [app.build, cache ?? app.cache, app.env], environment: environment)
    }

    func report() throws -> String {
        try mp.shim("report", [app.build, app.cache, app.env], environment: environment).stdout
    }

    var lockText: String? { app.read(".buildpacks.lock") }
}

@Suite struct LockTests {
    @Test func aBranchLockedToAnOlderCommitRunsThatCommitAfterTheBranchMoved() throws {
        let world = try LockWorld("lock-branch", buildpacks: { "\($0)/version.git#main\n" }, repos: ["version"])
        defer { world.server.stop() }
        let first = try world.commit(of: "version")
        let lock = try world.lock()
        #expect(lock.status == 0, "\(lock.all)")
        let text = try #require(world.lockText)
        #expect(text.hasPrefix("# Written by `multipack lock`"))
        #expect(text.contains("\(world.server.url("/version.git#main")) commit=\(first)\n"))

        let second = try world.advance("version", version: "2")
        let compile = try world.compile()
        #expect(compile.status == 0, "\(compile.all)")
        #expect(compile.stdout.contains("=====> Using .buildpacks.lock (1 of 1 pinned)"))
        #expect(compile.stdout.contains("@ \(first.prefix(12))"))
        #expect(world.app.read("versions-run") == "1\n", "the locked commit ran, not the branch's new head")
        #expect(try world.report().contains("lock: \"used\""))

        // `multipack lock` moves the pin and says so; the next build runs the new commit.
        let relock = try world.lock()
        #expect(relock.status == 0, "\(relock.all)")
        #expect(
            relock.stdout.contains(
                "\(world.server.url("/version.git#main")): commit \(first.prefix(12))… → \(second.prefix(12))…"))
        #expect(relock.stdout.contains("1 changed"))
        #expect(try #require(world.lockText).contains("commit=\(second)"))
        let again = try world.compile()
        #expect(again.status == 0, "\(again.all)")
        #expect(world.app.read("versions-run") == "1\n2\n")
    }

    @Test func updateMovesOnlyTheNamedChild() throws {
        let world = try LockWorld(
            "lock-update", buildpacks: { "\($0)/version.git#main\n\($0)/version-2.git\n" },
            repos: ["version", "version-2"])
        defer { world.server.stop() }
        let first = (try world.commit(of: "version"), try world.commit(of: "version-2"))
        #expect(try world.lock().status == 0)
        let moved = (try world.advance("version", version: "2"), try world.advance("version-2", version: "2"))
        let update = try world.lock(["--update", world.server.url("/version-2.git")])
        #expect(update.status == 0, "\(update.all)")
        #expect(update.stdout.contains("commit \(first.0.prefix(12))… (unchanged)"))
        #expect(update.stdout.contains("commit \(first.1.prefix(12))… → \(moved.1.prefix(12))…"))
        let text = try #require(world.lockText)
        #expect(text.contains("commit=\(first.0)") && text.contains("commit=\(moved.1)"))
        let unknown = try world.lock(["--update", "heroku/nothing"])
        #expect(unknown.status == 2 && unknown.stderr.contains("No line of .buildpacks is `heroku/nothing`"))
    }

    @Test func lockCheckFailsWhenABranchMovedAndPassesWhenCurrent() throws {
        let world = try LockWorld(
            "lock-check", buildpacks: { "\($0)/version.git#main\n\($0)/probe.tgz\n" }, repos: ["version"],
            archives: ["/probe.tgz": "env-probe"])
        defer { world.server.stop() }
        let missing = try world.lock(["--check"])
        #expect(missing.status == 1, "\(missing.all)")
        #expect(missing.stderr.contains("There is no .buildpacks.lock"))

        #expect(try world.lock().status == 0)
        let current = try world.lock(["--check"])
        #expect(current.status == 0, "\(current.all)")
        #expect(current.stdout.contains(".buildpacks.lock is current (2 of 2 pinned)"))

        let old = try world.commit(of: "version")
        let new = try world.advance("version", version: "2")
        let moved = try world.lock(["--check"])
        #expect(moved.status == 1, "\(moved.all)")
        #expect(moved.stderr.contains(".buildpacks line 1, `\(world.server.url("/version.git#main"))`"))
        #expect(
            moved.stderr.contains(
                "the lock has commit \(old.prefix(12))…; it now resolves to commit \(new.prefix(12))…"))
        #expect(!moved.stderr.contains("line 2"), "the archive did not change")
        #expect(try #require(world.lockText).contains("commit=\(old)"), "--check never writes the lock")
    }

    @Test func aWarmBuildWithEveryChildLockedMakesNoRequest() throws {
        let world = try LockWorld(
            "lock-warm",
            buildpacks: { "\($0)/version.git#main\n\($0)/probe.tgz\nfixtures/tester # a registry name\n" },
            repos: ["version"], archives: ["/probe.tgz": "env-probe", "/registry/fixtures/tester.tgz": "tester"])
        defer { world.server.stop() }
        // Without a lock: the log says what floats, and a warm build still asks upstream.
        let unlocked = try world.compile()
        #expect(unlocked.status == 0, "\(unlocked.all)")
        #expect(unlocked.stdout.contains("3 of 3 buildpacks follow a moving ref"))
        #expect(unlocked.stdout.contains("`multipack lock` pins them"))
        #expect(try world.report().contains("floating_children: 3"))
        let beforeWarm = world.server.totalRequests
        #expect(try world.compile().status == 0)
        #expect(world.server.totalRequests > beforeWarm, "floating children are revalidated")

        let lock = try world.lock()
        #expect(lock.status == 0, "\(lock.all)")
        #expect(lock.stdout.contains("fixtures/tester: sha256 "))
        let before = world.server.totalRequests
        let warm = try world.compile()
        #expect(warm.status == 0, "\(warm.all)")
        #expect(warm.stdout.contains("=====> Using .buildpacks.lock (3 of 3 pinned)"))
        #expect(!warm.stdout.contains("moving ref"))
        #expect(world.server.totalRequests == before, "no ls-remote, no conditional request, nothing")
        #expect(world.app.exists("tester-compiled") && world.app.exists("env-probe.txt"))
        let report = try world.report()
        #expect(report.contains("lock: \"used\"\nlock_pinned_children: 3\nfloating_children: 0\n"))
    }

    @Test func aLineAddedAfterLockingFailsTheBuildNamingIt() throws {
        let world = try LockWorld("lock-stale", buildpacks: { _ in "./vendor/tester\n" })
        defer { world.server.stop() }
        try FileManager.default.createDirectory(atPath: world.app.build + "/vendor", withIntermediateDirectories: true)
        for child in ["tester", "env-probe"] {
            try FileManager.default.copyItem(
                atPath: Repo.fixtures + "/buildpacks/" + child, toPath: world.app.build + "/vendor/" + child)
        }
        let lock = try world.lock()
        #expect(lock.status == 0, "\(lock.all)")
        #expect(lock.stdout.contains("./vendor/tester: local directory, not pinned"))
        #expect(try world.compile().stdout.contains("Using .buildpacks.lock (0 of 1 pinned, 1 local directory)"))

        try "# tools first\n./vendor/env-probe\n./vendor/tester\n".write(
            toFile: world.app.build + "/.buildpacks", atomically: true, encoding: .utf8)
        let stale = try world.compile()
        #expect(stale.status == 2, "\(stale.all)")
        #expect(stale.stderr.contains(".buildpacks.lock does not match .buildpacks."))
        #expect(stale.stderr.contains(".buildpacks line 2 is `./vendor/env-probe`"))
        #expect(stale.stderr.contains("Run `multipack lock`"))
        #expect(!world.app.exists("env-probe.txt"), "nothing ran")
        let check = try world.lock(["--check"])
        #expect(check.status == 1, "\(check.all)")
        #expect(check.stderr.contains(".buildpacks line 2 is `./vendor/env-probe`"))
    }

    /// The same reference pinned to two commits: the message names both pins, not the same line twice.
    @Test func aMismatchOfPinsNamesThePins() throws {
        let world = try LockWorld("lock-pins", buildpacks: { "\($0)/version.git#main\n" }, repos: ["version"])
        defer { world.server.stop() }
        let first = try world.commit(of: "version")
        #expect(try world.lock().status == 0)
        let second = try world.advance("version", version: "2")
        let url = world.server.url("/version.git#main")
        try "\(url) commit=\(second)\n".write(
            toFile: world.app.build + "/.buildpacks", atomically: true, encoding: .utf8)
        let stale = try world.compile()
        #expect(stale.status == 2, "\(stale.all)")
        #expect(
            stale.stderr.contains(
                ".buildpacks line 1, `\(url)`, pins commit \(second.prefix(12))…, but .buildpacks.lock line 2 pins "
                    + "commit \(first.prefix(12))…."), "\(stale.stderr)")
    }

    /// A locked commit that upstream no longer has (a force-push): the hint is about the lock.
    @Test func aLockedCommitThatIsGoneSaysToLockAgain() throws {
        let world = try LockWorld("lock-gone", buildpacks: { "\($0)/version.git#main\n" }, repos: ["version"])
        defer { world.server.stop() }
        _ = try world.advance("version", version: "2")
        #expect(try world.lock().status == 0)
        // History rewritten upstream: the locked commit is in neither the branch nor the repository.
        let repo = world.temp.path + "/remotes/version"
        try Shell.git(["reset", "--quiet", "--hard", "HEAD~1"], in: repo)
        try "3".write(toFile: repo + "/VERSION", atomically: true, encoding: .utf8)
        try Shell.git(["commit", "--quiet", "-am", "version 3"], in: repo)
        let bare = world.served + "/version.git"
        try Shell.git(["push", "--quiet", "--force", bare, "main"], in: repo)
        try Shell.git(["reflog", "expire", "--expire=now", "--all"], in: bare)
        try Shell.git(["gc", "--quiet", "--prune=now"], in: bare)
        try Shell.git(["update-server-info"], in: bare)
        let compile = try world.compile()
        #expect(compile.status == 1, "\(compile.all)")
        #expect(compile.stderr.contains("there is no commit"), "\(compile.stderr)")
        #expect(
            compile.stderr.contains(".buildpacks.lock pins this commit, which the repository no longer has"),
            "\(compile.stderr)")
        #expect(compile.stderr.contains("run `multipack lock` to pin what #main resolves to now"))
        #expect(!compile.stderr.contains("Check the #ref"))
    }

    @Test func aLockedCommitIsClonedShallowWhileItsRefStillPointsAtIt() throws {
        let world = try LockWorld("lock-shallow", buildpacks: { _ in "" })
        defer { world.server.stop() }
        let repo = try gitChild("version", in: world.temp)
        try "file://\(repo)#main\n".write(toFile: world.app.build + "/.buildpacks", atomically: true, encoding: .utf8)
        #expect(try world.lock().status == 0)
        let trace = ["BUILDPACK_XTRACE": "1"]
        let shallow = try world.mp.shim(
            "compile", [world.app.build, world.temp.sub("cache-1"), world.app.env],
            environment: world.environment.merging(trace) { $1 })
        #expect(shallow.status == 0, "\(shallow.all)")
        #expect(shallow.stdout.contains("clone --quiet --template= --no-checkout --branch main --depth 1"))

        try world.advance("version", version: "2")
        let moved = try world.mp.shim(
            "compile", [world.app.build, world.temp.sub("cache-2"), world.app.env],
            environment: world.environment.merging(trace) { $1 })
        #expect(moved.status == 0, "\(moved.all)")
        // The full clone, once main moved on.
        #expect(moved.stdout.contains("clone --quiet --template= --no-checkout -- file://"))
        #expect(world.app.read("versions-run") == "1\n1\n")
    }

    @Test func buildJSONCarriesTheLockState() throws {
        let world = try LocalWorld("lock-json")
        let repo = try gitChild("node", in: world.temp)
        let app = try world.app(buildpacks: nil)
        try "file://\(repo)#main\n\(world.buildpack("python"))\n".write(
            toFile: app + "/.buildpacks", atomically: true, encoding: .utf8)
        let unlocked = try world.buildJSON([app])
        #expect(unlocked.output.status == 0, "\(unlocked.output.all)")
        let before = try #require(unlocked.json["lock"] as? [String: Any])
        #expect(before["used"] as? Bool == false && before["floating"] as? Int == 1)
        #expect(unlocked.output.stderr.contains("1 of 2 buildpacks follow a moving ref"))

        let lock = try world.multipack(["lock", app])
        #expect(lock.status == 0, "\(lock.all)")
        let locked = try world.buildJSON([app])
        #expect(locked.output.status == 0, "\(locked.output.all)")
        let after = try #require(locked.json["lock"] as? [String: Any])
        #expect(after["used"] as? Bool == true)
        #expect(after["pinned"] as? Int == 1 && after["children"] as? Int == 2 && after["floating"] as? Int == 0)
        #expect(locked.output.stderr.contains("Using .buildpacks.lock (1 of 2 pinned, 1 local directory)"))
    }

    @Test func anUnreadableLockIsBadInputNamingItsLine() throws {
        let world = try LockWorld("lock-garbage", buildpacks: { _ in "heroku/python\n" })
        defer { world.server.stop() }
        try "# Written by `multipack lock`\nheroku/python sha256=not-a-digest\n".write(
            toFile: world.app.build + "/.buildpacks.lock", atomically: true, encoding: .utf8)
        let compile = try world.compile()
        #expect(compile.status == 2, "\(compile.all)")
        #expect(compile.stderr.contains("Your .buildpacks.lock has a line multipack cannot read."))
        #expect(compile.stderr.contains("Line 2: heroku/python sha256=not-a-digest"))
        #expect(world.server.totalRequests == 0)
        let check = try world.lock(["--check"])
        #expect(check.status == 1 && check.stderr.contains("Line 2:"), "\(check.all)")

        try FileManager.default.removeItem(atPath: world.app.build + "/.buildpacks.lock")
        try FileManager.default.createDirectory(
            atPath: world.app.build + "/.buildpacks.lock", withIntermediateDirectories: true)
        let directory = try world.compile()
        #expect(
            directory.status == 2
                && directory.stderr.contains("The app's .buildpacks.lock is a directory, not a file."),
            "\(directory.all)")
    }

    @Test func anUpstreamArchiveThatChangedFailsNamingBothDigestsUnlessCached() throws {
        let world = try LockWorld(
            "lock-archive", buildpacks: { "\($0)/probe.tgz?token=secret\n" }, archives: ["/probe.tgz": "env-probe"])
        defer { world.server.stop() }
        let locked = try #require(
            try Shell.run("sha256sum", [world.served + "/probe.tgz"]).stdout.split(separator: " ").first)
        #expect(try world.lock().status == 0)
        #expect(try #require(world.lockText).contains("probe.tgz?token=secret sha256=\(locked)\n"))
        #expect(try world.compile().status == 0, "a warm cache for later")

        let changed = try world.serveArchive("env-probe", at: "/probe.tgz", marker: "rebuilt upstream")
        #expect(changed != String(locked))
        let before = world.server.totalRequests
        let cached = try world.compile()
        #expect(cached.status == 0, "the cache holds the locked archive: \(cached.all)")
        #expect(world.server.totalRequests == before)

        let cold = try world.compile(cache: world.temp.sub("cold-cache"))
        #expect(cold.status == 1, "\(cold.all)")
        #expect(cold.stderr.contains("Failed to fetch buildpack [1/1] \(world.server.url("/probe.tgz?token=***"))"))
        #expect(cold.stderr.contains("locked  sha256 \(locked)"))
        #expect(cold.stderr.contains("fetched sha256 \(changed)"))
        #expect(!cold.all.contains("secret"))

        let relock = try world.lock()
        #expect(relock.stdout.contains("probe.tgz?token=***: sha256 \(locked.prefix(12))… → \(changed.prefix(12))…"))
        #expect(!relock.all.contains("secret"))
        #expect(try world.compile(cache: world.temp.sub("cold-cache")).status == 0)
    }
}
