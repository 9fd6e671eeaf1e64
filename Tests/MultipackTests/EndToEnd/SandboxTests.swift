import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Who runs multipack in a sandbox test: the test's own user, or (when the tests run as root) an
/// unprivileged user made for the purpose, so both sides of the uid mapping are exercised.
enum Runner: String, CaseIterable, CustomTestStringConvertible {
    case caller, unprivileged

    static let user = "multipack-test"
    var testDescription: String { rawValue }

    /// The uid a build has inside a namespace: 1000, as on Heroku, whoever runs it (SPEC §15).
    func insideUID() throws -> Int { 1000 }

    /// Whether multipack runs as root: its builds are then always in multipack's own namespaces.
    var isRoot: Bool { self == .caller && getuid() == 0 }

    /// The unprivileged user, created once (needs root; without it, the unprivileged case is
    /// reported as skipped, never run as the caller).
    static let unprivilegedReady: Bool = {
        guard getuid() == 0 else { return false }
        if (try? Shell.run("id", ["-u", user]))?.status == 0 { return true }
        _ = try? Shell.run("/usr/sbin/useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user])
        return (try? Shell.run("id", ["-u", user]))?.status == 0
    }()
}

/// Who makes the namespace: bubblewrap, or multipack itself (unshare, mounts, pivot_root).
enum Backend: String, CaseIterable, CustomTestStringConvertible {
    case bubblewrap, direct

    var testDescription: String { rawValue }
    /// As `--json` names it.
    var name: String { self == .bubblewrap ? "bubblewrap" : "namespaces" }

    /// As `--json` names the one `runner` gets: root's builds are multipack's own namespaces
    /// (bubblewrap run by root would map the build onto root).
    func name(for runner: Runner) -> String { runner.isRoot ? "namespaces" : name }
}

/// A LocalWorld whose multipack runs as `runner`, with `caller` added to its environment.
struct SandboxWorld {
    let world: LocalWorld
    let runner: Runner
    var caller: [String: String]

    /// `caller`: the environment the caller adds to every run (`MULTIPACK_SANDBOX`).
    init(_ name: String, runner: Runner, caller: [String: String] = [:]) throws {
        if runner == .unprivileged, !Runner.unprivilegedReady {
            try Test.cancel("Skipped: the unprivileged case runs as \(Runner.user), which only root can switch to.")
        }
        world = try LocalWorld(name)
        self.runner = runner
        self.caller = caller
    }

    @discardableResult
    func multipack(_ arguments: [String], extra: [String: String] = [:]) throws -> Output {
        let environment = world.environment.merging(caller) { $1 }.merging(extra) { $1 }
        guard runner == .unprivileged else {
            return try Shell.run(Repo.binary, arguments, in: world.temp.path, environment: environment)
        }
        // The user may not reach the checkout (CI clones anywhere): the binary goes into the
        // temp dir, which is handed to the user whole.
        let binary = world.temp.path + "/bin/multipack"
        if !FileManager.default.fileExists(atPath: binary) {
            try FileManager.default.createDirectory(atPath: world.temp.path + "/bin", withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: Repo.binary, toPath: binary)
        }
        _ = try Shell.run("chown", ["-R", Runner.user + ":", world.temp.path])
        let assignments = environment.map { "\($0.key)=\($0.value)" }
        return try Shell.run(
            "/usr/sbin/runuser", ["-u", Runner.user, "--", "/usr/bin/env", "-i"] + assignments + [binary] + arguments,
            in: world.temp.path)
    }

    /// An app whose `.buildpacks` lists the given fixture children.
    func app(_ children: [String], files: [String: String] = [:]) throws -> String {
        let app = try world.app("plain", buildpacks: nil)
        // Copies of the children, which the unprivileged user can read wherever the checkout is.
        var list = ""
        for child in children {
            let copy = world.temp.path + "/buildpacks/" + child
            if !FileManager.default.fileExists(atPath: copy) {
                try FileManager.default.createDirectory(
                    atPath: world.temp.path + "/buildpacks", withIntermediateDirectories: true)
                try FileManager.default.copyItem(atPath: world.buildpack(child), toPath: copy)
            }
            list += copy + "\n"
        }
        try list.write(toFile: app + "/.buildpacks", atomically: true, encoding: .utf8)
        for (path, text) in files {
            try world.temp.write("app/" + path, text, executable: path.hasPrefix("bin/"))
        }
        return app
    }

    func fields(_ path: String) throws -> [String: String] {
        var fields: [String: String] = [:]
        for line in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            fields[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return fields
    }
}

@Suite struct SandboxTests {
    @Test(arguments: Runner.allCases, Backend.allCases)
    func aChildSeesHerokusLayoutAndNothingOfTheCallers(runner: Runner, backend: Backend) throws {
        let sandbox = try SandboxWorld(
            "sandbox-probe", runner: runner,
            caller: [
                "LEAKY_SECRET": "from-the-caller", "https_proxy": "http://127.0.0.1:9", "no_proxy": "127.0.0.1",
                "EDITOR": "vi", "MULTIPACK_SANDBOX": backend.rawValue,
            ])
        let app = try sandbox.app(["probe"])
        let (before, _) = try tmpEntries()
        let build = try sandbox.multipack(["build", app, "--json"])
        #expect(build.status == 0, "\(build.all)")
        #expect(!build.stderr.contains("No namespaces here"), "\(build.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(build.stdout.utf8)) as? [String: Any])
        #expect(json["sandbox"] as? String == backend.name(for: runner))
        let buildDir = try #require(json["build_directory"] as? String)
        let probe = try sandbox.fields(buildDir + "/probe.txt")
        #expect(probe["HOME"] == "/app")
        #expect(probe["APP_WRITABLE"] == "yes")
        let inside = try #require(probe["BUILD_DIR"])
        #expect(inside.wholeMatch(of: /\/tmp\/build_[0-9a-f]{8}/) != nil, "\(inside)")
        #expect(probe["CACHE_DIR"] == "/tmp/codon/tmp/cache")
        let uid = try #require(probe["UID"].flatMap { Int($0) })
        #expect(uid != 0)
        #expect(uid == (try? runner.insideUID()))
        // The same root from either maker: this machine's system directories and nothing else of
        // it (--stack-root /, as the test environment has it).
        let host = Set(try FileManager.default.contentsOfDirectory(atPath: "/")).filter {
            ["usr", "bin", "sbin", "etc", "opt"].contains($0) || $0.hasPrefix("lib")
        }
        let root = Set((probe["ROOT"] ?? "").split(separator: " ").map(String.init))
        #expect(root == host.union(["app", "dev", "proc", "tmp"]), "\(root)")
        let names = Set((probe["NAMES"] ?? "").split(separator: " ").map(String.init))
        let heroku: Set<String> = ["HOME", "LANG", "PATH", "STACK", "REQUEST_ID"]
        #expect(heroku.isSubset(of: names), "\(names)")
        // Only the network settings come from the caller; bash adds PWD, SHLVL, OLDPWD, _.
        // No MULTIPACK_* of multipack's own (its settings, where its buildpack is) reaches a child.
        let allowed = heroku.union(["SOURCE_VERSION", "https_proxy", "no_proxy", "PWD", "SHLVL", "OLDPWD", "_"])
        #expect(names.subtracting(allowed).isEmpty, "leaked in: \(names.subtracting(allowed))")
        #expect(names.contains("https_proxy") && !names.contains("LEAKY_SECRET") && !names.contains("EDITOR"))
        // The build directory on the host is the app's state, and nothing was left in TMPDIR or /tmp.
        #expect(buildDir.hasPrefix(sandbox.world.cacheHome + "/multipack/apps/app-"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: sandbox.world.tmp).isEmpty)
        let (after, _) = try tmpEntries()
        #expect(!FileManager.default.fileExists(atPath: inside))
        #expect(after.subtracting(before).filter { $0.hasPrefix("build_") }.isEmpty)
    }

    @Test(arguments: Runner.allCases, Backend.allCases)
    func aPythonLikeChildsToolIsTheOneTheHooksAndTheDynoFind(runner: Runner, backend: Backend) throws {
        let sandbox = try SandboxWorld(
            "sandbox-python", runner: runner, caller: ["MULTIPACK_SANDBOX": backend.rawValue])
        let app = try sandbox.app(
            ["python-home"],
            files: [
                "bin/post_compile":
                    "#!/usr/bin/env bash\necho \"post_compile found $(command -v python3): $(python3)\"\n",
                "Procfile": "web: python3\n",
            ])
        let build = try sandbox.multipack(["build", app])
        #expect(build.status == 0, "\(build.all)")
        #expect(build.stdout.contains("Installing python3 (fixture) at /app/.heroku/python"))
        #expect(
            build.stdout.contains("post_compile found /app/.heroku/python/bin/python3: the child's python3"),
            "\(build.all)")
        let slug = try #require(
            build.stdout.split(separator: "\n").first { $0.contains("Slug: ") }.map {
                String($0.split(separator: " ")[1])
            })
        let echo = try sandbox.multipack(["run", slug, "--", "sh", "-c", "echo $HOME $PWD"])
        #expect(echo.status == 0, "\(echo.all)")
        #expect(echo.stdout == "/app /app\n")
        // .profile.d puts the child's runtime first at run time too; the last build is named.
        let web = try sandbox.multipack(["run", app, "web"])
        #expect(web.stdout == "the child's python3\n", "\(web.all)")
        #expect(web.stderr.contains("Using the last build of \(app): build_"))
        let uid = try sandbox.multipack(["run", app, "--", "id", "-u"])
        #expect(uid.stdout != "0\n" && !uid.stdout.isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: sandbox.world.tmp).isEmpty)
    }

    @Test(arguments: Runner.allCases)
    func withoutBubblewrapMultipackMakesTheNamespaceItself(runner: Runner) throws {
        var sandbox = try SandboxWorld("sandbox-nobwrap", runner: runner)
        // No bwrap on the caller's PATH, and nothing forced: multipack's own namespace.
        sandbox.caller = ["PATH": sandbox.world.temp.path + "/no-bwrap"]
        let app = try sandbox.app(["probe"])
        let build = try sandbox.multipack(["build", app, "--json"])
        #expect(build.status == 0, "\(build.all)")
        #expect(!build.stderr.contains("No namespaces here"), "\(build.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(build.stdout.utf8)) as? [String: Any])
        #expect(json["sandbox"] as? String == "namespaces")
        let probe = try sandbox.fields(try #require(json["build_directory"] as? String) + "/probe.txt")
        let uid = try runner.insideUID()
        #expect(probe["HOME"] == "/app" && probe["UID"] == String(uid), "\(probe)")
        let run = try sandbox.multipack(["run", app, "--", "sh", "-c", "echo $HOME $PWD $(id -u)"])
        #expect(run.stdout == "/app /app \(uid)\n", "\(run.all)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: sandbox.world.tmp).isEmpty)
    }

    /// A stack root in the temp dir with an /opt (and the given directories) of its own; it
    /// borrows this machine's /usr and /etc, bound in by `unshare -Urm` (no copy, no root needed).
    static func stackRoot(_ sandbox: SandboxWorld, directories: [String] = []) throws -> String {
        let root = sandbox.world.temp.path + "/stack"
        for directory in ["usr", "etc", "opt"] + directories {
            try FileManager.default.createDirectory(atPath: root + "/" + directory, withIntermediateDirectories: true)
        }
        for name in ["bin", "sbin", "lib", "lib64"] {
            try FileManager.default.createSymbolicLink(atPath: root + "/" + name, withDestinationPath: "usr/" + name)
        }
        return root
    }

    /// `build APP --stack-root ROOT --json` with the root's /usr and /etc bound in (in a mount
    /// namespace of root's own: in a user namespace that maps only root, root's build would have
    /// no id that owns nothing to run as).
    static func build(_ app: String, on root: String, _ sandbox: SandboxWorld, backend: Backend) throws -> Output {
        let mounts = "mount --rbind /usr \"$0/usr\" && mount --rbind /etc \"$0/etc\" && exec \"$@\""
        return try Shell.run(
            "/usr/bin/unshare",
            [
                getuid() == 0 ? "-m" : "-Urm", "sh", "-c", mounts, root, Repo.binary, "build", app, "--stack-root",
                root,
                "--stack", "heroku-24", "--json",
            ],
            in: sandbox.world.temp.path,
            environment: sandbox.world.environment.merging(["MULTIPACK_SANDBOX": backend.rawValue]) { $1 })
    }

    /// `--stack-root` with either maker: the root's directories are what the build sees.
    @Test(arguments: Backend.allCases)
    func aStackRootIsTheBuildsRoot(backend: Backend) throws {
        let sandbox = try SandboxWorld("sandbox-stack", runner: .caller)
        let root = try Self.stackRoot(sandbox)
        try "the stack's own\n".write(toFile: root + "/opt/marker", atomically: true, encoding: .utf8)
        let app = try sandbox.app(["probe"], files: ["bin/post_compile": "#!/bin/sh\ncat /opt/marker > marker.txt\n"])
        let build = try Self.build(app, on: root, sandbox, backend: backend)
        #expect(build.status == 0, "\(build.all)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(build.stdout.utf8)) as? [String: Any])
        #expect(json["sandbox"] as? String == backend.name(for: .caller))
        let buildDir = try #require(json["build_directory"] as? String)
        #expect(try String(contentsOfFile: buildDir + "/marker.txt", encoding: .utf8) == "the stack's own\n")
        let probe = try sandbox.fields(buildDir + "/probe.txt")
        #expect(probe["HOME"] == "/app" && probe["UID"] == "1000", "\(probe)")
        let seen = Set((probe["ROOT"] ?? "").split(separator: " ").map(String.init))
        // /run is the namespace's own: multipack's binary runs there through this machine's loader.
        #expect(
            seen == ["app", "bin", "dev", "etc", "lib", "lib64", "opt", "proc", "run", "sbin", "tmp", "usr"], "\(seen)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: sandbox.world.tmp).isEmpty)
    }

    /// An app in a directory the stack root has read-only but without the app's path (here
    /// /var/tmp, as scripts/verify-chroot.sh has it): its mount point is made in a tmpfs that
    /// holds the root's own entries of that directory, which the build still sees.
    @Test(arguments: Backend.allCases)
    func aStackRootTakesAnAppFromUnderOneOfItsOwnDirectories(backend: Backend) throws {
        let sandbox = try SandboxWorld("sandbox-stack-var", runner: .caller)
        let root = try Self.stackRoot(sandbox, directories: ["var/tmp"])
        try "the stack's own\n".write(toFile: root + "/var/tmp/marker", atomically: true, encoding: .utf8)
        let outside = try Shell.run("mktemp", ["-d", "/var/tmp/multipack-test-stack-XXXXXX"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        defer { try? FileManager.default.removeItem(atPath: outside) }
        let app = outside + "/app"
        try FileManager.default.moveItem(
            atPath: try sandbox.app(
                ["probe"], files: ["bin/post_compile": "#!/bin/sh\ncat /var/tmp/marker > marker.txt\n"]),
            toPath: app)
        let build = try Self.build(app, on: root, sandbox, backend: backend)
        #expect(build.status == 0, "\(build.all)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(build.stdout.utf8)) as? [String: Any])
        let buildDir = try #require(json["build_directory"] as? String)
        #expect(try String(contentsOfFile: buildDir + "/marker.txt", encoding: .utf8) == "the stack's own\n")
    }

    /// Inside `unshare --user` with no uid map (as in a container that forbids nested user
    /// namespaces) multipack's own namespace cannot map the caller: the build falls back to the
    /// host with the one warning, and a forced `direct` says which step failed.
    @Test func aMachineThatRefusesTheNamespaceFallsBackToTheHostOrSaysWhy() throws {
        let sandbox = try SandboxWorld("sandbox-refused", runner: .caller)
        let app = try sandbox.app(["probe"])
        let environment = sandbox.world.environment.merging(["PATH": sandbox.world.temp.path + "/no-bwrap"]) { $1 }
        func build(_ extra: [String: String]) throws -> Output {
            try Shell.run(
                "/usr/bin/unshare", ["--user", "--", Repo.binary, "build", app, "--json"], in: sandbox.world.temp.path,
                environment: environment.merging(extra) { $1 })
        }
        let fallback = try build([:])
        #expect(fallback.status == 0, "\(fallback.all)")
        #expect(fallback.stderr.components(separatedBy: " !     No namespaces here").count == 2, "\(fallback.stderr)")
        #expect(fallback.stderr.contains("refuses a user namespace"), "\(fallback.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(fallback.stdout.utf8)) as? [String: Any])
        #expect(json["sandbox"] as? String == "none")

        let forced = try build(["MULTIPACK_SANDBOX": "direct"])
        #expect(forced.status == 1, "\(forced.all)")
        #expect(forced.stderr.contains("The namespace could not be set up"), "\(forced.stderr)")
        #expect(forced.stderr.contains("MULTIPACK_SANDBOX=off"))
        #expect(!forced.all.contains("POSIXError") && !forced.all.contains("SpawnError"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: sandbox.world.tmp).isEmpty)
    }

    @Test func withoutNamespacesTheBuildRunsOnTheHostWithOneWarning() throws {
        let sandbox = try SandboxWorld("sandbox-off", runner: .caller)
        let app = try sandbox.app(["probe"])
        let build = try sandbox.multipack(["build", app, "--json"], extra: ["MULTIPACK_SANDBOX": "off"])
        #expect(build.status == 0, "\(build.all)")
        let warnings = build.stderr.components(separatedBy: " !     No namespaces here").count - 1
        #expect(warnings == 1, "\(build.stderr)")
        #expect(build.stderr.contains("instead of /app"))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(build.stdout.utf8)) as? [String: Any])
        #expect(json["sandbox"] as? String == "none")
        let probe = try sandbox.fields(try #require(json["build_directory"] as? String) + "/probe.txt")
        #expect(probe["HOME"] != "/app" && probe["HOME"]?.hasPrefix(sandbox.world.cacheHome) == true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: sandbox.world.tmp).isEmpty)

        let run = try sandbox.multipack(
            ["run", app, "--", "sh", "-c", "echo $HOME"], extra: ["MULTIPACK_SANDBOX": "off"])
        #expect(run.status == 0, "\(run.all)")
        #expect(run.stderr.contains(" !     No namespaces here"))
        // HOME is the run's fresh copy of the build, in TMPDIR, removed afterwards.
        #expect(run.stdout.hasPrefix(sandbox.world.tmp + "/multipack-run-") && run.stdout.hasSuffix("/app\n"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: sandbox.world.tmp).isEmpty)
    }

    @Test func runSaysSoWhenTheAppHasNoBuild() throws {
        let sandbox = try SandboxWorld("sandbox-nobuild", runner: .caller)
        let app = try sandbox.app(["probe"], files: ["Procfile": "web: echo from-the-source\n"])
        let never = try sandbox.multipack(["run", app])
        #expect(never.status != 0)
        #expect(never.stderr.contains("has no build to run"), "\(never.stderr)")
        #expect(!never.stdout.contains("from-the-source"))
        #expect(try sandbox.multipack(["build", app]).status == 0)
        // With no type, every type of the Procfile, prefixed as heroku local prints them.
        #expect(try sandbox.multipack(["run", app]).stdout == "web.1 | from-the-source\n")
        #expect(try sandbox.multipack(["cache", "purge", app]).status == 0)
        let purged = try sandbox.multipack(["run", app])
        #expect(purged.status != 0 && purged.stderr.contains("has no build to run"))
        #expect(!purged.stdout.contains("from-the-source"))
    }

    /// Whoever uid 1000 is outside, the machine's directories are read-only inside.
    @Test(arguments: Backend.allCases)
    func theSystemDirectoriesAreReadOnlyInside(backend: Backend) throws {
        let sandbox = try SandboxWorld(
            "sandbox-readonly", runner: .caller, caller: ["MULTIPACK_SANDBOX": backend.rawValue])
        let app = try sandbox.app(["probe"])
        #expect(try sandbox.multipack(["build", app]).status == 0)
        let name = "multipack-readonly-probe-\(getpid())-\(backend.rawValue)"
        defer { for directory in ["/usr", "/etc", "/opt"] { unlink(directory + "/" + name) } }
        let script = "for d in /usr /etc /opt; do touch $d/\(name) 2>/dev/null && echo $d writable; done; echo checked"
        let run = try sandbox.multipack(["run", app, "--", "sh", "-c", script])
        #expect(run.stdout == "checked\n", "\(run.all)")
        for directory in ["/usr", "/etc", "/opt"] {
            #expect(!FileManager.default.fileExists(atPath: directory + "/" + name))
        }
        let devices = try sandbox.multipack(["run", app, "--", "sh", "-c", "ls /dev | tr '\\n' ' '"])
        #expect(
            devices.stdout.split(separator: " ").allSatisfy {
                !$0.hasPrefix("sd") && !$0.hasPrefix("vd") && !$0.hasPrefix("nvme")
            })
    }

    /// As on a dyno, each run starts from the build and what it writes is gone afterwards.
    @Test(arguments: ["bubblewrap", "direct", "off"])
    func runStartsFromAFreshCopyOfTheLastBuild(backend: String) throws {
        let sandbox = try SandboxWorld("sandbox-fresh", runner: .caller, caller: ["MULTIPACK_SANDBOX": backend])
        let app = try sandbox.app(["probe"], files: ["Procfile": "web: cat Procfile\n"])
        let build = try sandbox.multipack(["build", app, "--json"])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(build.stdout.utf8)) as? [String: Any])
        let buildDir = try #require(json["build_directory"] as? String)
        let before = try FileManager.default.contentsOfDirectory(atPath: buildDir).sorted()
        let write = try sandbox.multipack(["run", app, "--", "sh", "-c", "echo web: changed > Procfile; touch new"])
        #expect(write.status == 0, "\(write.all)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: buildDir).sorted() == before)
        #expect(try String(contentsOfFile: buildDir + "/Procfile", encoding: .utf8) == "web: cat Procfile\n")
        let again = try sandbox.multipack(["run", app])
        #expect(again.stdout == "web.1 | web: cat Procfile\n", "\(again.all)")
        // A build directory given itself is copied too.
        let direct = try sandbox.multipack(["run", buildDir, "--", "sh", "-c", "touch new; ls new"])
        #expect(direct.stdout == "new\n", "\(direct.all)")
        #expect(!FileManager.default.fileExists(atPath: buildDir + "/new"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: sandbox.world.tmp).isEmpty)
    }

    @Test func aFailedBuildLeavesNothingInTMPDIRAndNoBuildToRun() throws {
        let sandbox = try SandboxWorld("sandbox-fail", runner: .caller)
        let app = try sandbox.app(["fail-compile"])
        let build = try sandbox.multipack(["build", app])
        #expect(build.status == 1, "\(build.all)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: sandbox.world.tmp).isEmpty)
        let run = try sandbox.multipack(["run", app, "--", "true"])
        #expect(run.stderr.contains("has no build to run"), "\(run.stderr)")
    }

    private func tmpEntries() throws -> (Set<String>, Int) {
        let entries = try FileManager.default.contentsOfDirectory(atPath: "/tmp")
        return (Set(entries), entries.count)
    }
}
