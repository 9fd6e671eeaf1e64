import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// SPEC §15, "Not root, for real" (issue #23, failure 1): a local build run by root gives its
/// buildpacks, hooks and commands no access to root's files, whichever way its namespace is made
/// or without one; and afterwards everything it worked on is the caller's again, without a
/// setuid or setgid bit, whatever the outcome.
@Suite(.enabled(if: getuid() == 0)) struct RootlessTests {
    /// How the build is isolated: multipack's own namespaces, the default with bubblewrap
    /// installed (root's builds are multipack's own too), or none.
    enum Mode: String, CaseIterable, CustomTestStringConvertible {
        case direct, bubblewrap, off
        var testDescription: String { rawValue }
        var environment: [String: String] { self == .bubblewrap ? [:] : ["MULTIPACK_SANDBOX": rawValue] }
        var namespaced: Bool { self != .off }
    }

    /// What the probe reports from inside, one `name=value` a line; it reads nothing secret into
    /// the log, only whether it could.
    static let probe = """
        report() {
          echo "uid=$(id -u)"
          echo "groups=$(awk '/^Groups:/ { $1 = ""; print }' /proc/self/status | xargs)"
          echo "nnp=$(awk '/^NoNewPrivs:/ { print $2 }' /proc/self/status)"
          head -c 12 /etc/shadow > /dev/null 2>&1 && echo shadow=read || echo shadow=denied
          cat "$1" > /dev/null 2>&1 && echo secret=read || echo secret=denied
          touch /etc/multipack-rootless-probe 2> /dev/null && echo etc=written || echo etc=denied
          touch /usr/multipack-rootless-probe 2> /dev/null && echo usr=written || echo usr=denied
        }
        """

    /// A world whose app lists one local buildpack: a git repository (`file://`) holding a 0600
    /// root file it never committed (the repository is bound into the build as it is, the file
    /// with it; the clone has what was committed).
    struct World {
        let world: LocalWorld
        let app: String
        let buildpack: String
        var secret: String { buildpack + "/root-only.txt" }

        init(_ name: String, compile: String) throws {
            world = try LocalWorld(name)
            let temp = world.temp
            buildpack = temp.path + "/probe-buildpack"
            try temp.write("probe-buildpack/bin/detect", "#!/usr/bin/env bash\necho Probe\n", executable: true)
            try temp.write(
                "probe-buildpack/bin/compile", "#!/usr/bin/env bash\n\(RootlessTests.probe)\n\(compile)\n",
                executable: true)
            try Shell.git(["init", "--quiet", "--initial-branch=main"], in: buildpack)
            try Shell.git(["add", "-A"], in: buildpack)
            try Shell.git(["commit", "--quiet", "-m", "probe"], in: buildpack)
            let secret = buildpack + "/root-only.txt"
            try "root's own secret\n".write(toFile: secret, atomically: false, encoding: .utf8)
            chmod(secret, 0o600)
            app = try world.app("plain", buildpacks: nil)
            // Cloned by the build's user (a repository root owns: git must be told it is safe).
            try ("file://" + buildpack + "\n").write(toFile: app + "/.buildpacks", atomically: true, encoding: .utf8)
            try "web: true\n".write(toFile: app + "/Procfile", atomically: true, encoding: .utf8)
        }

        var state: String {
            get throws {
                let apps = world.cacheHome + "/multipack/apps"
                return apps + "/" + (try #require(try FileManager.default.contentsOfDirectory(atPath: apps).first))
            }
        }
    }

    /// `name=value` lines of a file.
    static func fields(_ path: String) throws -> [String: String] {
        fields(try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init))
    }

    static func fields(_ lines: [String]) -> [String: String] {
        var fields: [String: String] = [:]
        for line in lines {
            guard let equals = line.firstIndex(of: "=") else { continue }
            fields[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return fields
    }

    /// What a root build's buildpack and a dyno may not do, and what they are.
    static func expectNoRootAccess(_ report: [String: String], mode: Mode, _ context: String) {
        // 1000 inside a namespace; without one, the id that owns nothing itself.
        if mode.namespaced { #expect(report["uid"] == "1000", "\(context)") }
        #expect(report["uid"] != "0" && report["uid"] != nil, "\(context)")
        #expect(report["groups"] == "", "supplementary groups: \(context)")
        #expect(report["nnp"] == "1", "\(context)")
        #expect(report["shadow"] == "denied", "\(context)")
        #expect(report["secret"] == "denied", "\(context)")
        #expect(report["etc"] == "denied" && report["usr"] == "denied", "\(context)")
        #expect(!FileManager.default.fileExists(atPath: "/etc/multipack-rootless-probe"))
        #expect(!FileManager.default.fileExists(atPath: "/usr/multipack-rootless-probe"))
    }

    /// A directory's named ACL entries (`user:ID:perms`), read with Python's os.getxattr.
    static func accessACL(_ path: String) throws -> String {
        let script = """
            import os, struct, sys
            try: data = os.getxattr(sys.argv[1], "system.posix_acl_access")
            except OSError: sys.exit(0)
            for offset in range(4, len(data), 8):
                tag, perm, ident = struct.unpack("<HHI", data[offset:offset + 8])
                if tag == 2: print("user:%d:%s" % (ident, "".join(c if perm & b else "-" for c, b in zip("rwx", (4, 2, 1)))))
            """
        return try Shell.run("python3", ["-c", script, path]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Everything under `paths` is root's again, and nothing is setuid or setgid.
    static func expectHandedBack(_ paths: [String], _ context: String) {
        for path in paths {
            let found = try? Shell.run(
                "find", [path, "(", "!", "-uid", "0", "-o", "!", "-gid", "0", "-o", "-perm", "/6000", ")", "-print"])
            #expect(found?.status == 0 && found?.stdout == "", "not handed back: \(found?.all ?? path) (\(context))")
        }
    }

    @Test(arguments: Mode.allCases)
    func aRootBuildsBuildpacksAndDynosHaveNoneOfRootsAccess(mode: Mode) throws {
        let world = try World(
            "rootless-\(mode.rawValue)",
            compile: """
                report "$(cat "$3/SECRET")" > "$1/inside.txt"
                cp /bin/true "$1/tool" && chmod 6755 "$1/tool"
                mkdir -p "$2/deep/er" && cp /bin/true "$2/deep/er/tool" && chmod 4755 "$2/deep/er/tool"
                echo "       probed"
                """)
        // A cache of the caller's own choosing (which others may reach) comes back too.
        let cache = world.world.temp.sub("own-cache")
        var arguments = ["build", world.app, "-e", "SECRET=\(world.secret)", "--cache", cache, "--json"]
        if mode.namespaced { arguments += ["--stack-root", "/"] }
        let build = try world.world.multipack(arguments, extra: mode.environment)
        #expect(build.status == 0, "\(build.all)")
        #expect(!build.all.contains("root's own secret"))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(build.stdout.utf8)) as? [String: Any])
        #expect(json["sandbox"] as? String == (mode.namespaced ? "namespaces" : "none"))
        let buildDir = try #require(json["build_directory"] as? String)
        Self.expectNoRootAccess(try Self.fields(buildDir + "/inside.txt"), mode: mode, "build: \(build.all)")
        // What the build made is root's, without its setuid bits: the build directory, the
        // cache, the state directory and the slug.
        Self.expectHandedBack([try world.state, cache], "build")
        #expect(FileManager.default.fileExists(atPath: cache + "/deep/er/tool"))
        let tool = try FileManager.default.attributesOfItem(atPath: buildDir + "/tool")
        #expect((tool[.posixPermissions] as? Int).map { $0 & 0o6000 } == 0)

        let script = Self.probe + "\nreport \"$1\""
        let run = try world.world.multipack(
            ["run", world.app, "--", "bash", "-c", script, "probe", world.secret], extra: mode.environment)
        #expect(run.status == 0, "\(run.all)")
        let report = Self.fields(run.stdout.split(separator: "\n").map(String.init))
        Self.expectNoRootAccess(report, mode: mode, "run: \(run.all)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: world.world.tmp).isEmpty)
    }

    /// Failed, stopped by SIGTERM, or killed: the build's directories come back to root, the
    /// killed build's through the next build.
    @Test(arguments: [Mode.direct, Mode.off])
    func whateverTheOutcomeTheCallerGetsItsDirectoriesBack(mode: Mode) throws {
        let world = try World(
            "rootless-outcomes-\(mode.rawValue)",
            compile: """
                cp /bin/true "$1/tool" && chmod 6755 "$1/tool"
                cp /bin/true "$2/tool" && chmod 4755 "$2/tool"
                case "$(cat "$3/MODE" 2> /dev/null)" in
                  fail) echo "       failing"; exit 1 ;;
                  slow) echo "       slow compile started"; sleep 300 ;;
                esac
                """)
        let failed = try world.world.multipack(["build", world.app, "-e", "MODE=fail"], extra: mode.environment)
        #expect(failed.status == 1, "\(failed.all)")
        Self.expectHandedBack([try world.state], "failed")

        for signal in [SIGTERM, SIGKILL] {
            let log = world.world.temp.path + "/build.log"
            let process = try Repo.start(
                ["build", world.app, "-e", "MODE=slow"],
                environment: world.world.environment.merging(mode.environment) { $1 }, log: log)
            defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
            let started = Date()
            let output = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
            while process.isRunning && !output().contains("slow compile started")
                && Date().timeIntervalSince(started) < 60
            {
                usleep(20_000)
            }
            try #require(output().contains("slow compile started"), "\(output())")
            // While it runs, no one but root (and the build's user) passes into its directories;
            // without namespaces, the private state lets the build's user alone through (an ACL).
            let work = try FileManager.default.attributesOfItem(atPath: try world.state + "/work")
            #expect((work[.posixPermissions] as? Int).map { $0 & 0o077 } == 0)
            #expect(try Self.accessACL(try world.state).contains("user:65533:--x") == !mode.namespaced)
            kill(process.processIdentifier, signal)
            process.waitUntilExit()
            if signal == SIGTERM {
                #expect(process.terminationStatus == 128 + SIGTERM, "\(output())")
                Self.expectHandedBack([try world.state], "SIGTERM")
            } else {
                // Without namespaces the killed build's processes are gone with it too.
                usleep(200_000)
            }
        }
        // The marker of the killed build is there; the next build hands its leftovers back first.
        #expect(FileManager.default.fileExists(atPath: try world.state + "/.handed-over"))
        let next = try world.world.multipack(["build", world.app], extra: mode.environment)
        #expect(next.status == 0, "\(next.all)")
        Self.expectHandedBack([try world.state], "after a SIGKILL, the next build")
        #expect(!FileManager.default.fileExists(atPath: try world.state + "/.handed-over"))
        // The state is private again: no ACL entry left, mode 0700.
        #expect(try Self.accessACL(try world.state) == "")
        let state = try FileManager.default.attributesOfItem(atPath: try world.state)
        #expect(state[.posixPermissions] as? Int == 0o700)
    }

    /// Where the state's file system cannot be idmapped (ramfs here, NFS in life), the build's
    /// directories are handed to the build's user for the build and back after.
    @Test func aFileSystemWithoutIdmapsIsHandedOverAndBack() throws {
        let world = try World(
            "rootless-ramfs",
            compile: """
                report "$(cat "$3/SECRET")" > "$1/inside.txt"
                cp /bin/true "$2/tool" && chmod 4755 "$2/tool"
                """)
        let cacheHome = world.world.cacheHome
        let script = """
            mount -t ramfs ramfs "$0" && "$@" > "$0.out" 2>&1
            echo "status=$?" >> "$0.out"
            find "$0" ! -uid 0 -o ! -gid 0 -o -perm /6000 >> "$0.out"
            cat "$0"/multipack/apps/*/kept/build/inside.txt >> "$0.out"
            """
        let run = try Shell.run(
            "/usr/bin/unshare",
            ["-m", "sh", "-c", script, cacheHome, Repo.binary, "build", world.app, "-e", "SECRET=\(world.secret)"],
            in: world.world.temp.path, environment: world.world.environment)
        #expect(run.status == 0, "\(run.all)")
        let output = try String(contentsOfFile: cacheHome + ".out", encoding: .utf8)
        let lines = output.split(separator: "\n").map(String.init)
        #expect(lines.contains("status=0"), "\(output)")
        let after = lines.drop { !$0.hasPrefix("status=") }.dropFirst()
        // Nothing but the probe's report after the status: every entry was root's again.
        #expect(after.allSatisfy { $0.contains("=") }, "\(output)")
        Self.expectNoRootAccess(Self.fields(Array(after)), mode: .direct, output)
    }

    /// What root reads of what a build wrote (its Procfile, the `.env` and config vars a run
    /// reads, the outcome) never follows a link the build made to a file of root's.
    @Test(arguments: [Mode.direct, Mode.off])
    func linksABuildLeavesAreNotFollowedByRoot(mode: Mode) throws {
        let world = try World(
            "rootless-links-\(mode.rawValue)",
            compile: """
                ln -sf "$(cat "$3/PROCFILE")" "$1/Procfile"
                ln -sf "$(cat "$3/DOTENV")" "$1/.env"
                [ -w "$3" ] && ln -sf "$(cat "$3/DOTENV")" "$3/SECRET_VAR"
                mkdir -p "$1/bin" && echo hook > "$1/bin/.multipack-held-post_compile"
                echo "       linked"
                """)
        let secrets = world.world.temp.sub("root-secrets")
        try "leak: echo TOPSECRET-PROCFILE\n".write(toFile: secrets + "/procfile", atomically: false, encoding: .utf8)
        try "LEAK=TOPSECRET-DOTENV\n".write(toFile: secrets + "/dotenv", atomically: false, encoding: .utf8)
        for name in ["procfile", "dotenv"] { chmod(secrets + "/" + name, 0o600) }
        let build = try world.world.multipack(
            [
                "build", world.app, "-e", "PROCFILE=\(secrets)/procfile", "-e", "DOTENV=\(secrets)/dotenv", "-e",
                "SECRET_VAR=plain",
            ], extra: mode.environment)
        #expect(build.status == 0, "\(build.all)")
        #expect(!build.all.contains("TOPSECRET"), "\(build.all)")
        let run = try world.world.multipack(
            ["run", world.app, "--", "sh", "-c", "echo \"leak=$LEAK secret=$SECRET_VAR\""], extra: mode.environment)
        // The build's .env is a link: refused, or run without it; never read through.
        #expect(!run.all.contains("TOPSECRET"), "\(run.all)")
        let leak = try world.world.multipack(["run", world.app, "leak"], extra: mode.environment)
        #expect(leak.status != 0 && !leak.all.contains("TOPSECRET"), "\(leak.all)")
    }

    /// A local buildpack holding a file its user may not read cannot be copied for the build:
    /// the fetch says which file, and nothing of it reaches the log.
    @Test func aLocalBuildpackWithARootOnlyFileIsRefusedNamingIt() throws {
        let world = try World("rootless-unreadable", compile: "true")
        let copy = world.world.temp.path + "/plain-buildpack"
        _ = try Shell.run("cp", ["-a", world.buildpack, copy])
        _ = try Shell.run("rm", ["-rf", copy + "/.git"])
        try (copy + "\n").write(toFile: world.app + "/.buildpacks", atomically: true, encoding: .utf8)
        let build = try world.world.multipack(["build", world.app])
        #expect(build.status == 1, "\(build.all)")
        #expect(build.stderr.contains(copy + "/root-only.txt") && build.stderr.contains("Permission denied"))
        #expect(!build.all.contains("root's own secret"))
    }
}

/// The same checks as the unprivileged test user, where they apply: uid 1000 inside, nothing
/// gained by exec, the machine's files as any user sees them.
@Suite struct UnprivilegedIsolationTests {
    @Test(arguments: Backend.allCases)
    func anOrdinaryUsersBuildIsUid1000WithNoNewPrivileges(backend: Backend) throws {
        let sandbox = try SandboxWorld(
            "unprivileged-isolation", runner: .unprivileged, caller: ["MULTIPACK_SANDBOX": backend.rawValue])
        try sandbox.world.temp.write(
            "children/probe/bin/detect", "#!/usr/bin/env bash\necho Probe\n", executable: true)
        try sandbox.world.temp.write(
            "children/probe/bin/compile",
            "#!/usr/bin/env bash\n\(RootlessTests.probe)\nreport /etc/shadow > \"$1/inside.txt\"\n",
            executable: true)
        let app = try sandbox.world.app("plain", buildpacks: nil)
        try (sandbox.world.temp.path + "/children/probe\n").write(
            toFile: app + "/.buildpacks", atomically: true, encoding: .utf8)
        let build = try sandbox.multipack(["build", app, "--stack-root", "/", "--json"])
        #expect(build.status == 0, "\(build.all)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(build.stdout.utf8)) as? [String: Any])
        let report = try RootlessTests.fields(try #require(json["build_directory"] as? String) + "/inside.txt")
        #expect(report["uid"] == "1000", "\(report)")
        #expect(report["nnp"] == "1" && report["shadow"] == "denied", "\(report)")
        #expect(report["etc"] == "denied" && report["usr"] == "denied", "\(report)")
    }
}
