import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The red team's repros of issue #23 against the real binary: each hostile input is refused at
/// once with its exit code and message, in bounded memory, and nothing is written where it must
/// not be.
@Suite struct HostileInputTests {
    /// Runs the binary under /usr/bin/time: the output, and the peak memory in KB.
    static func measured(_ world: LocalWorld, _ arguments: [String]) throws -> (output: Output, peakKB: Int) {
        let report = world.temp.path + "/time-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: report) }
        let output = try Shell.run(
            "/usr/bin/time", ["-f", "%M", "-o", report, Repo.binary] + arguments, in: world.temp.path,
            environment: world.environment)
        let peak = Int((try String(contentsOfFile: report, encoding: .utf8)).split(separator: "\n").last ?? "") ?? -1
        return (output, peak)
    }

    static func mkfifo(_ path: String) throws {
        guard Glibc.mkfifo(path, 0o644) == 0 else { throw TestFailure("mkfifo \(path): \(errno)") }
    }

    /// `--env-file` of a device, a FIFO nobody writes to, a directory and a 1 GB (sparse) file.
    @Test func anEnvFileThatIsNoConfigIsRefusedAtOnce() throws {
        let world = try LocalWorld("envfile-hostile")
        let app = try world.app(buildpacks: nil)
        try Self.mkfifo(world.temp.path + "/fifo.env")
        let huge = world.temp.path + "/huge.env"
        #expect(try Shell.run("truncate", ["-s", "1G", huge]).status == 0)
        let cases = [
            ("/dev/zero", "The --env-file /dev/zero is a device, not a file."),
            ("fifo.env", "The --env-file fifo.env is a FIFO (named pipe), not a file"),
            ("app", "The --env-file app is a directory, not a file."),
            ("huge.env", "The --env-file huge.env is larger than 1.0 MB, far more than config vars take"),
        ]
        for (file, message) in cases {
            let start = Date()
            let (build, peak) = try Self.measured(
                world, ["build", app, "--buildpack", world.buildpack("env-probe"), "--env-file", file])
            #expect(build.status == 2, "\(file): \(build.all)")
            #expect(build.stderr.contains(" !     " + message), "\(file): \(build.stderr)")
            #expect(Date().timeIntervalSince(start) < 10, "\(file)")
            #expect(peak > 0 && peak < 100_000, "\(file): \(peak) KB")
        }
        // Nothing was started: no build directory, no app state.
        #expect(try FileManager.default.contentsOfDirectory(atPath: world.tmp).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: world.cacheHome + "/multipack"))
    }

    /// The app's `.env` as `multipack run` reads it, and `app.json` as `ci` reads it.
    @Test func anAppsDotEnvOrAppJSONThatIsNoFileIsRefused() throws {
        let world = try LocalWorld("dotenv-hostile")
        let app = try world.app(buildpacks: ["node"])
        let build = try world.multipack(["build", app])
        #expect(build.status == 0, "\(build.all)")
        try Self.mkfifo(app + "/.env")
        let fifo = try world.multipack(["run", app, "--", "true"])
        #expect(fifo.status == 2, "\(fifo.all)")
        #expect(
            fifo.stderr.contains("The app's .env: \(app)/.env is a FIFO (named pipe), not a file"), "\(fifo.stderr)")
        try FileManager.default.removeItem(atPath: app + "/.env")
        #expect(try Shell.run("truncate", ["-s", "2M", app + "/.env"]).status == 0)
        let big = try world.multipack(["run", app, "--", "true"])
        #expect(big.status == 2, "\(big.all)")
        #expect(big.stderr.contains("is larger than 1.0 MB"), "\(big.stderr)")

        try FileManager.default.createSymbolicLink(atPath: app + "/app.json", withDestinationPath: "/dev/zero")
        let (ci, peak) = try Self.measured(world, ["ci", app])
        #expect(ci.status == 2, "\(ci.all)")
        #expect(ci.stderr.contains("The app's app.json cannot be read: it is a device, not a file."), "\(ci.stderr)")
        #expect(peak > 0 && peak < 100_000, "\(peak) KB")
    }

    /// `--slug` onto a FIFO, a device node or a directory: refused before the build runs, the
    /// node untouched, nothing made beside it.
    @Test func aSlugPathThatIsNoFileIsRefusedBeforeTheBuild() throws {
        let world = try LocalWorld("slug-hostile")
        let app = try world.app(buildpacks: ["node"])
        let targets = world.temp.sub("targets")
        try Self.mkfifo(targets + "/fifo")
        let directory = world.temp.sub("targets/directory")
        var nodes = [
            (targets + "/fifo", "is a FIFO (named pipe), not a file"),
            (directory, "is a directory, not a file"),
        ]
        // A device node of our own when we may make one (root), else the system's.
        let device = targets + "/null"
        if Glibc.mknod(device, S_IFCHR | 0o666, dev_t((1 << 8) | 3)) == 0 {
            nodes.append((device, "is a device, not a file"))
        } else {
            nodes.append(("/dev/null", "is a device, not a file"))
        }
        for (path, kind) in nodes {
            var before = stat()
            lstat(path, &before)
            let build = try world.multipack(["build", app, "--slug", path])
            #expect(build.status == 2, "\(path): \(build.all)")
            #expect(build.stderr.contains(" !     --slug \(path) \(kind): multipack replaces only a file there."))
            #expect(!build.stdout.contains("Building"), "the build ran: \(build.stdout)")
            var after = stat()
            lstat(path, &after)
            #expect(before.st_ino == after.st_ino && before.st_mode == after.st_mode, "\(path) was replaced")
            #expect(!FileManager.default.fileExists(atPath: path + ".env"))
            #expect(!FileManager.default.fileExists(atPath: path + ".release.yml"))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty)
        let listing = try FileManager.default.contentsOfDirectory(atPath: targets).sorted()
        #expect(listing.allSatisfy { ["directory", "fifo", "null"].contains($0) }, "\(listing)")

        // A symlink to a device (as /dev/stdout is) is not replaced either.
        let link = targets + "/stdout"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "/dev/null")
        let linked = try world.multipack(["build", app, "--slug", link])
        #expect(linked.status == 2, "\(linked.all)")
        #expect(linked.stderr.contains("--slug \(link) is a device, not a file"), "\(linked.stderr)")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: link) == "/dev/null")
        try FileManager.default.removeItem(atPath: link)

        // A sidecar that is a directory is not removed either.
        let sidecar = world.temp.sub("targets/slug.tgz.env")
        try "keep".write(toFile: sidecar + "/file", atomically: true, encoding: .utf8)
        let beside = try world.multipack(["build", app, "--slug", targets + "/slug.tgz"])
        #expect(beside.status == 2, "\(beside.all)")
        #expect(beside.stderr.contains("\(sidecar), which --slug \(targets)/slug.tgz would replace, is a directory"))
        #expect(FileManager.default.fileExists(atPath: sidecar + "/file"))
        #expect(!FileManager.default.fileExists(atPath: targets + "/slug.tgz"))
    }

    /// A compile of an app whose `.buildpacks` lists one quick child, with `prepare` run on the app.
    static func compile(_ name: String, _ prepare: (App, TempDir) throws -> Void) throws -> (Output, App) {
        let temp = try TempDir(name)
        let child = try scriptedChild("quick", in: temp, release: "echo '--- {}'")
        let app = try App(nil, in: temp, buildpacks: child + "\n")
        try prepare(app, temp)
        let mp = try Multipack(in: temp)
        return (try mp.shim("compile", [app.build, app.cache, app.env], environment: ["TMPDIR": temp.sub("tmp")]), app)
    }

    /// `.buildpacks`, `.slugfilter` and `.buildpacks.lock` that lead out of the app are never
    /// followed, so the file they point at is never echoed; one that is a FIFO, a directory or a
    /// device is bad input.
    @Test func aSlugfilterOrALockThatIsNoFileOfTheAppIsRefused() throws {
        let secret = "- SECRET-LINE-FROM-OUTSIDE\nnot a rule: SECRET-LINE-FROM-OUTSIDE\n"
        let cases: [(String, String, (App, TempDir) throws -> Void)] = [
            (
                ".slugfilter", "The app's .slugfilter is a symlink out of the app.",
                { app, temp in
                    try temp.write("outside", secret)
                    try FileManager.default.createSymbolicLink(
                        atPath: app.build + "/.slugfilter", withDestinationPath: temp.path + "/outside")
                }
            ),
            (
                ".buildpacks.lock", "The app's .buildpacks.lock is a symlink out of the app.",
                { app, temp in
                    try temp.write("outside", secret)
                    try FileManager.default.createSymbolicLink(
                        atPath: app.build + "/.buildpacks.lock", withDestinationPath: "../outside")
                }
            ),
            (
                ".buildpacks", "The app's .buildpacks is a symlink out of the app.",
                { app, temp in
                    try temp.write("outside", temp.path + "/children/quick\n# SECRET-LINE-FROM-OUTSIDE\n")
                    try FileManager.default.removeItem(atPath: app.build + "/.buildpacks")
                    try FileManager.default.createSymbolicLink(
                        atPath: app.build + "/.buildpacks", withDestinationPath: temp.path + "/outside")
                }
            ),
            (
                ".buildpacks", "The app's .buildpacks is a symlink to nothing.",
                { app, temp in
                    try FileManager.default.removeItem(atPath: app.build + "/.buildpacks")
                    try FileManager.default.createSymbolicLink(
                        atPath: app.build + "/.buildpacks", withDestinationPath: temp.path + "/nowhere")
                }
            ),
            (
                ".slugfilter", "The app's .slugfilter is a FIFO (named pipe), not a file.",
                { app, _ in
                    try Self.mkfifo(app.build + "/.slugfilter")
                }
            ),
            (
                ".slugfilter", "The app's .slugfilter is a directory, not a file.",
                { app, _ in
                    try FileManager.default.createDirectory(
                        atPath: app.build + "/.slugfilter", withIntermediateDirectories: true)
                }
            ),
        ]
        for (file, message, prepare) in cases {
            let start = Date()
            let (compile, app) = try Self.compile("app-files", prepare)
            #expect(compile.status == 2, "\(file): \(compile.all)")
            #expect(compile.stderr.contains(" !     " + message), "\(file): \(compile.stderr)")
            #expect(!compile.all.contains("SECRET"), "\(file): \(compile.all)")
            #expect(!compile.stdout.contains("Detected"), "a child ran: \(compile.stdout)")
            #expect(Date().timeIntervalSince(start) < 10)
            _ = app
        }
        // A symlink that stays in the app is followed.
        let (inside, _) = try Self.compile("app-files-inside") { app, temp in
            try temp.write("build/config/slugfilter", "- junk\n")
            try FileManager.default.createSymbolicLink(
                atPath: app.build + "/.slugfilter", withDestinationPath: "config/slugfilter")
        }
        #expect(inside.status == 0, "\(inside.all)")
        #expect(inside.stdout.contains("Trimming the slug with .slugfilter"))
    }

    /// A release that is not YAML is quoted in the error, at most 10 lines of 200 characters.
    /// A device node in the app (only root may make one) is bad input too, never opened.
    @Test(.enabled(if: getuid() == 0, "making a device node needs root"))
    func aSlugfilterThatIsADeviceIsRefused() throws {
        let (compile, _) = try Self.compile("app-device") { app, _ in
            guard Glibc.mknod(app.build + "/.slugfilter", S_IFCHR | 0o666, dev_t((1 << 8) | 3)) == 0 else {
                throw TestFailure("mknod: \(errno)")
            }
        }
        #expect(compile.status == 2, "\(compile.all)")
        #expect(compile.stderr.contains(" !     The app's .slugfilter is a device, not a file."), "\(compile.stderr)")
        #expect(!compile.stdout.contains("Detected"), "a child ran: \(compile.stdout)")
    }

    @Test func aBadReleaseIsEchoedInPart() throws {
        let temp = try TempDir("release-echo")
        let child = try scriptedChild(
            "noisy", in: temp,
            release: "printf 'not: [yaml\\n'; python3 -c 'print((\"x\" * 100000 + \"\\n\") * 100)'")
        let app = try App(nil, in: temp, buildpacks: child + "\n")
        let mp = try Multipack(in: temp)
        let compile = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(compile.status == 1, "\(compile.all.prefix(3000))")
        #expect(compile.stderr.contains("bin/release must print a YAML mapping"), "\(compile.stderr.prefix(3000))")
        #expect(compile.stderr.contains("bytes in all; the rest is not shown)"))
        #expect(compile.all.utf8.count < 20_000, "\(compile.all.utf8.count) bytes of output")
    }

    /// A reference of 200 KB is refused as bad input, naming its size, never handed to git.
    @Test func aHugeGitURLIsRefusedClearly() throws {
        let (compile, _) = try Self.compile("long-url") { app, _ in
            let url = "https://example.com/" + String(repeating: "a", count: 200_000) + ".git"
            try (url + "\n").write(toFile: app.build + "/.buildpacks", atomically: true, encoding: .utf8)
        }
        #expect(compile.status == 2, "\(compile.all.prefix(2000))")
        #expect(
            compile.stderr.contains("The reference is 200024 bytes long; a buildpack URL or path is at most 8192 bytes")
        )
        #expect(!compile.all.contains("Install git"))
        #expect(compile.all.utf8.count < 5_000)
    }

    /// app.json with a key twice: the last one counts, as in Heroku's parsers.
    @Test func appJSONDuplicateKeysKeepTheLast() throws {
        let world = try LocalWorld("appjson-dup")
        let app = try world.app(buildpacks: ["node"])
        let json = #"""
            {"environments": {"test": {"scripts": {"test": "echo first-test-ran; exit 3"}}},
             "environments": {"test": {"scripts": {"test": "echo first-test-ran; exit 4", "te\u0073t": "echo last-test-ran"}}}}
            """#
        try json.write(toFile: app + "/app.json", atomically: true, encoding: .utf8)
        let ci = try world.multipack(["ci", app], extra: ["MULTIPACK_SANDBOX": "off"])
        #expect(ci.status == 0, "\(ci.all)")
        #expect(ci.stdout.contains("last-test-ran"), "\(ci.stdout)")
        #expect(!ci.all.contains("first-test-ran"))
    }
}
