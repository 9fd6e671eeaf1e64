import Foundation
import Testing

@testable import MultipackKit

#if canImport(Glibc)
    import Glibc
#endif

/// `run -- COMMAND` with no app and `--mount HOST:PATH[:ro]` for `run` and `build` (SPEC §19):
/// an empty writable /app that stays inside, mounts that carry results out, owned by the caller.
@Suite struct MountTests {
    /// Every file under `root` whose name is `name`.
    static func find(_ name: String, under roots: [String]) throws -> String {
        try Shell.run("find", roots + ["-name", name]).stdout
    }

    @Test func runWithNoAppCarriesAFileOutThroughAMountAndLeavesNothingOfApp() throws {
        let world = try LocalWorld("mount-run")
        let out = world.temp.sub("out")
        let sources = world.temp.sub("sources")
        try world.temp.write("sources/hello.txt", "from the host\n")
        // A link to the directory is followed: the mount is the directory itself.
        try FileManager.default.createSymbolicLink(atPath: world.temp.path + "/out-link", withDestinationPath: out)
        let marker = "left-in-app-\(UUID().uuidString)"
        let output = try world.multipack([
            "run", "--mount", "out-link:/output", "--mount", sources + ":/var/cache/sources:ro", "--",
            "bash", "-c",
            """
            set -e
            echo "uid=$(id -u) home=$HOME pwd=$PWD app=[$(ls -A /app)] stack=$STACK"
            touch /app/\(marker)
            cat /var/cache/sources/hello.txt > /output/result.txt
            if touch /var/cache/sources/written 2>/dev/null; then echo "read-only mount written"; exit 3; fi
            """,
        ])
        #expect(output.status == 0, "\(output.all)")
        #expect(output.stdout.contains("uid=1000 home=/app pwd=/app app=[] stack=heroku-24"), "\(output.stdout)")
        #expect(try String(contentsOfFile: out + "/result.txt", encoding: .utf8) == "from the host\n")
        var info = stat()
        #expect(
            stat(out + "/result.txt", &info) == 0 && info.st_uid == getuid(), "the caller owns what a mount carries out"
        )
        #expect(!FileManager.default.fileExists(atPath: sources + "/written"))
        #expect(try Self.find(marker, under: [world.temp.path]).isEmpty, "nothing written under /app is left")
        #expect((try? FileManager.default.contentsOfDirectory(atPath: world.tmp)) == [], "the run's scratch is gone")
    }

    @Test func runWithNoAppNeedsACommand() throws {
        let world = try LocalWorld("mount-nothing")
        let output = try world.multipack(["run"])
        #expect(output.status == 2, "\(output.all)")
        #expect(output.stderr.contains("multipack run needs an app, a slug, or a command after --."))
    }

    /// A buildpack writes into a mount; the build's /app and build directory stay its own.
    @Test func buildWithAMountCarriesAFileOut() throws {
        let world = try LocalWorld("mount-build")
        let app = try world.app("plain", buildpacks: nil)
        let out = world.temp.sub("artifacts")
        try world.temp.write("bp/bin/detect", "#!/usr/bin/env bash\necho Writer\n", executable: true)
        try world.temp.write(
            "bp/bin/compile", "#!/usr/bin/env bash\nset -e\nid -u > /artifacts/uid\ncp -r \"$1\" /artifacts/app-copy\n",
            executable: true)
        let output = try world.multipack([
            "build", app, "--buildpack", world.temp.path + "/bp", "--mount", out + ":/artifacts",
        ])
        #expect(output.status == 0, "\(output.all)")
        #expect(try String(contentsOfFile: out + "/uid", encoding: .utf8) == "1000\n")
        #expect(FileManager.default.fileExists(atPath: out + "/app-copy"))
        var info = stat()
        #expect(stat(out + "/uid", &info) == 0 && info.st_uid == getuid(), "the caller's after the build")
        #expect(stat(out + "/app-copy", &info) == 0 && info.st_uid == getuid())
    }

    /// Each refusal is a usage error (exit 2) said before anything runs.
    @Test(arguments: [
        ("missing:/output", "the host directory", "does not exist"),
        ("DIR:output", "the path inside must be absolute", ""),
        ("DIR:/", "a mount cannot replace the whole root, /", ""),
        ("DIR:/app", "/app is /app, which the namespace makes itself", ""),
        ("DIR:/app/vendor", "/app/vendor lies inside /app", ""),
        ("DIR:/tmp", "/tmp is /tmp", ""),
        ("DIR:/tmp/build_1234abcd", "lies inside /tmp", "the build directory is there"),
        ("DIR:/proc", "/proc is /proc", ""),
        ("DIR:/dev/shm", "/dev/shm lies inside /dev", ""),
        ("DIR:/sys/fs", "lies inside /sys", ""),
        ("DIR:/var/../app", "must not hold `..`", ""),
        ("FILE:/output", "is not a directory", ""),
        ("DIR", "give the host directory and the path inside", ""),
        ("/:/host", "/ is a system directory", ":ro"),
    ])
    func refusals(_ mount: String, _ message: String, _ more: String) throws {
        let world = try LocalWorld("mount-refused")
        let dir = world.temp.sub("dir")
        try world.temp.write("file", "x")
        let value = mount.replacing("DIR", with: dir).replacing("FILE", with: world.temp.path + "/file")
            .replacing("missing", with: world.temp.path + "/missing")
        let marker = world.temp.path + "/ran"
        let app = try world.app("plain", buildpacks: nil)
        for arguments in [
            ["run", "--mount", value, "--", "touch", marker],
            ["build", app, "--buildpack", world.temp.path + "/none", "--mount", value],
        ] {
            let output = try world.multipack(arguments)
            #expect(output.status == 2, "\(arguments): \(output.all)")
            #expect(output.stderr.contains("--mount "), "\(output.stderr)")
            #expect(output.stderr.contains(message), "\(output.stderr)")
            #expect(more.isEmpty || output.stderr.contains(more), "\(output.stderr)")
            #expect(!FileManager.default.fileExists(atPath: marker))
        }
        #expect(!FileManager.default.fileExists(atPath: world.cacheHome + "/multipack/apps"), "nothing ran")
    }

    /// Run by root, a mount is the build's user's while the command runs and root's again after;
    /// what a killed run left handed over, the next run hands back.
    @Test(.enabled(if: getuid() == 0, "only root's runs hand mounts over"))
    func rootsMountsAreHandedOverForTheRunAndBack() throws {
        let world = try LocalWorld("mount-root")
        let out = world.temp.sub("out")
        try world.temp.write("out/before.txt", "root's\n")
        let user = try BuildUser.current()
        let log = world.temp.path + "/run.log"
        let run = try Repo.start(
            ["run", "--mount", out + ":/output", "--", "bash", "-c", "touch /output/made; sleep 60"],
            environment: world.environment, log: log)
        var info = stat()
        var handed = false
        for _ in 0..<200 {
            if stat(out + "/made", &info) == 0 {
                handed = true
                break
            }
            usleep(50_000)
        }
        #expect(handed, "\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        #expect(stat(out + "/made", &info) == 0 && info.st_uid == user.uid, "the build's user's while it runs")
        #expect(stat(out + "/before.txt", &info) == 0 && info.st_uid == user.uid)
        kill(run.processIdentifier, SIGKILL)
        run.waitUntilExit()
        // Killed: nothing handed it back yet.
        #expect(stat(out + "/made", &info) == 0 && info.st_uid == user.uid)

        let next = try world.multipack(["run", "--mount", world.temp.sub("other") + ":/other", "--", "true"])
        #expect(next.status == 0, "\(next.all)")
        for file in ["made", "before.txt"] {
            #expect(stat(out + "/" + file, &info) == 0 && info.st_uid == 0, "\(file) is root's again")
        }
        #expect(stat(out, &info) == 0 && info.st_uid == 0)
    }

    @Test func twoMountsThatOverlapAreRefused() throws {
        let world = try LocalWorld("mount-overlap")
        let one = world.temp.sub("one")
        let two = world.temp.sub("two")
        let output = try world.multipack([
            "run", "--mount", one + ":/data", "--mount", two + ":/data/inner", "--", "true",
        ])
        #expect(output.status == 2, "\(output.all)")
        #expect(output.stderr.contains("overlap"))
    }
}
