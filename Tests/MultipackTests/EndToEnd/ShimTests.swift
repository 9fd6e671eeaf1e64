import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The bin/ shims (SPEC §3, §16) with a buildpack.toml written by the test and the binary under
/// test on a loopback server: detect in bash alone; compile's download, checked by digest and kept
/// by it in CACHE_DIR; the config vars; the messages; the shim protocol.
@Suite struct ShimTests {
    static let arch =
        (try? Shell.run("uname", ["-m"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? "x86_64"
    static let binary: [UInt8] = Array(FileManager.default.contents(atPath: Repo.binary) ?? Data())
    static let binarySHA256: String = String(((try? Shell.run("sha256sum", [Repo.binary]).stdout) ?? "").prefix(64))

    /// bin/, lib/ and a buildpack.toml naming `url` and `sha256`, without vendor/: a git checkout.
    func checkout(in temp: TempDir, url: String, sha256: String?) throws -> String {
        let dir = temp.sub("multipack-checkout")
        for item in ["bin", "lib"] {
            try FileManager.default.copyItem(atPath: Repo.root + "/" + item, toPath: dir + "/" + item)
        }
        var toml = """
            [buildpack]
            id = "multipack/multipack"
            version = "9.8.7"

            [metadata.multipack]
            binary_url = "\(url)"

            """
        if let sha256 { toml += "sha256_\(Self.arch) = \"\(sha256)\"\n" }
        try toml.write(toFile: dir + "/buildpack.toml", atomically: true, encoding: .utf8)
        return dir
    }

    /// An app with one fixture child given by path, so that a compile is quick.
    func app(in temp: TempDir, config: [String: String] = [:]) throws -> App {
        try App(nil, in: temp, buildpacks: Repo.fixtures + "/buildpacks/probe\n", config: config)
    }

    func run(_ dir: String, _ verb: String, _ arguments: [String], extra: [String: String] = [:]) throws -> Output {
        var env = Multipack.environment(extra)
        env["PATH"] = herokuLikePath
        return try Shell.run(dir + "/bin/" + verb, arguments, environment: env)
    }

    func files(_ path: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
    }

    @Test func detectAnswersInBashAloneAndNeverBlocks() throws {
        let temp = try TempDir("detect")
        // No binary anywhere, nothing to download, no PATH: detect needs none of it.
        let dir = try checkout(in: temp, url: "http://127.0.0.1:9/unused", sha256: nil)
        func detect(_ app: String) throws -> Output {
            try Shell.run(dir + "/bin/detect", [app], environment: ["PATH": "/nonexistent"])
        }
        let app = temp.sub("app")
        let nothing = try detect(app)
        #expect(nothing.status == 1 && nothing.stdout.isEmpty)
        #expect(nothing.stderr.contains(" !     No .buildpacks file in the app"), "\(nothing.all)")

        try "{\"name\": \"x\", \"env\": {}}".write(toFile: app + "/app.json", atomically: true, encoding: .utf8)
        #expect(try detect(app).status == 1)
        // A "buildpacks" key, found in the text (anything else in the file does not matter).
        try "{\"name\": \"x\",\n  \"buildpacks\" :\n [{\"url\": \"heroku/python\"}], \u{0}\u{ff}"
            .write(toFile: app + "/app.json", atomically: true, encoding: .utf8)
        let json = try detect(app)
        #expect(json.status == 0 && json.stdout == "Multipack\n", "\(json.all)")
        // An app.json that is a FIFO is not read (it would block).
        try FileManager.default.removeItem(atPath: app + "/app.json")
        #expect(mkfifo(app + "/app.json", 0o644) == 0)
        #expect(try detect(app).status == 1)

        // .buildpacks is looked at, never opened: a FIFO, a dangling link, an empty file.
        #expect(mkfifo(app + "/.buildpacks", 0o644) == 0)
        let fifo = try detect(app)
        #expect(fifo.status == 0 && fifo.stdout == "Multipack\n", "\(fifo.all)")
        try FileManager.default.removeItem(atPath: app + "/.buildpacks")
        try FileManager.default.createSymbolicLink(atPath: app + "/.buildpacks", withDestinationPath: "/nonexistent")
        #expect(try detect(app).status == 0)
        // A relative BUILD_DIR works; nothing was downloaded or written into the buildpack.
        let relative = try Shell.run(dir + "/bin/detect", ["app"], in: temp.path, environment: ["PATH": "/nonexistent"])
        #expect(relative.status == 0, "\(relative.all)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/vendor"))

        // The binary's own detect (which local builds run) answers the same.
        for (path, expected) in [(app, Int32(0)), (temp.sub("empty"), 1)] {
            #expect(try Shell.run(Repo.binary, ["detect", path]).status == expected)
        }
    }

    @Test func compileDownloadsWithTheConfigVarsAndKeepsTheBinaryByDigest() throws {
        let temp = try TempDir("download")
        let server = try LoopbackHTTPServer(routes: ["/mirror/multipack-\(Self.arch)": .serve(body: Self.binary)])
        defer { server.stop() }
        // The checkout names no digest: both come from the config vars (blanks and a newline trimmed).
        let dir = try checkout(in: temp, url: "http://127.0.0.1:9/unused", sha256: nil)
        let app = try app(
            in: temp,
            config: [
                "MULTIPACK_BINARY_URL": server.url("/mirror/multipack-{arch}?token=s3cret") + "\n",
                "MULTIPACK_BINARY_SHA256": " " + Self.binarySHA256.uppercased() + "\n",
            ])
        let compile = try run(dir, "compile", [app.build, app.cache, app.env])
        #expect(compile.status == 0, "\(compile.all)")
        #expect(compile.stderr.contains("Downloading multipack 9.8.7 for \(Self.arch) from http://127.0.0.1:"))
        #expect(!compile.all.contains("s3cret"))
        #expect(files(app.cache + "/.multipack/bin") == [Self.binarySHA256])
        #expect(files(dir + "/vendor") == ["multipack-\(Self.arch)"])
        // The later verbs of the build run what compile kept.
        #expect(try run(dir, "release", [app.build]).status == 0)
        #expect(server.requestCount("/mirror/multipack-\(Self.arch)") == 1)
        // The config var's digest wins over the environment's.
        let other = try TempDir("download-env")
        let again = try checkout(in: other, url: "http://127.0.0.1:9/unused", sha256: nil)
        let cached = try run(
            again, "compile", [app.build, app.cache, app.env], extra: ["MULTIPACK_BINARY_SHA256": "abc"])
        #expect(cached.status == 0, "\(cached.all)")
        #expect(cached.stderr.contains("Using multipack 9.8.7 for \(Self.arch) from the cache"))
        #expect(server.requestCount("/mirror/multipack-\(Self.arch)") == 1)
    }

    @Test func theEnvironmentOverridesBuildpackTomlsURL() throws {
        let temp = try TempDir("mirror")
        let server = try LoopbackHTTPServer(routes: ["/mirror/multipack-\(Self.arch)": .serve(body: Self.binary)])
        defer { server.stop() }
        let dir = try checkout(in: temp, url: "http://127.0.0.1:9/unused", sha256: Self.binarySHA256)
        let app = try app(in: temp)
        let result = try run(
            dir, "compile", [app.build, app.cache, app.env],
            extra: ["MULTIPACK_BINARY_URL": server.url("/mirror/multipack-{arch}")])
        #expect(result.status == 0, "\(result.all)")
        #expect(server.requestCount("/mirror/multipack-\(Self.arch)") == 1)
    }

    @Test func aWrongDigestIsRefusedAndNothingIsKept() throws {
        let temp = try TempDir("baddigest")
        let server = try LoopbackHTTPServer(routes: ["/multipack-\(Self.arch)": .serve(body: Self.binary)])
        defer { server.stop() }
        let dir = try checkout(
            in: temp, url: server.url("/multipack-{arch}"), sha256: String(repeating: "0", count: 64))
        let app = try app(in: temp)
        for _ in 0..<2 {
            let result = try run(dir, "compile", [app.build, app.cache, app.env])
            #expect(result.status == 1)
            #expect(
                result.stderr.contains(
                    " !     The multipack binary downloaded from \(server.url("/multipack-\(Self.arch)")) is not the one expected:"
                ), "\(result.all)")
            #expect(result.stderr.contains("sha256_\(Self.arch) in buildpack.toml says sha256 0000"))
            #expect(result.stderr.contains("the download is \(Self.binarySHA256)"))
            #expect(
                result.stderr.contains("https://github.com/multipack/multipack/releases/download/v9.8.7/multipack.tgz"))
            #expect(result.stdout.isEmpty)
            #expect(files(dir + "/vendor").isEmpty)
            #expect(files(app.cache).isEmpty)
        }
        // Each call downloads again rather than running anything left behind.
        #expect(server.requestCount("/multipack-\(Self.arch)") == 2)
        let notHex = try run(
            dir, "compile", [app.build, app.cache, app.env], extra: ["MULTIPACK_BINARY_SHA256": "abc"])
        #expect(notHex.status == 1)
        #expect(
            notHex.stderr.contains("(the config var MULTIPACK_BINARY_SHA256) is not 64 hex digits"), "\(notHex.all)")
    }

    @Test func withNoReleaseToDownloadTheMessageSaysWhatToDo() throws {
        let temp = try TempDir("nodigest")
        let server = try LoopbackHTTPServer(routes: ["/multipack-\(Self.arch)": .serve(body: Self.binary)])
        defer { server.stop() }
        let dir = try checkout(in: temp, url: server.url("/multipack-{arch}"), sha256: nil)
        let app = try app(in: temp)
        let result = try run(dir, "compile", [app.build, app.cache, app.env])
        #expect(result.status == 1)
        for phrase in [
            " !     multipack has no binary for \(Self.arch) in \(dir), and cannot get one:",
            "buildpack.toml lists no sha256_\(Self.arch)", "there is no Swift toolchain to build it",
            "heroku buildpacks:set https://github.com/multipack/multipack\n",
            "heroku buildpacks:set https://github.com/multipack/multipack#v9.8.7",
            "https://github.com/multipack/multipack/releases/download/v9.8.7/multipack.tgz",
            "set the config vars MULTIPACK_BINARY_URL", "heroku config:set MULTIPACK_BINARY_URL=",
        ] {
            #expect(result.stderr.contains(phrase), "\(phrase): \(result.stderr)")
        }
        #expect(!result.stderr.contains("<org>"))
        #expect(server.requestCount("/multipack-\(Self.arch)") == 0)
    }

    @Test func aServerThatIsDownGivesTheClearMessage() throws {
        let temp = try TempDir("down")
        let server = try LoopbackHTTPServer(routes: [:])
        let url = server.url("/multipack-{arch}")
        server.stop()
        let dir = try checkout(in: temp, url: url, sha256: Self.binarySHA256)
        let app = try app(in: temp)
        let result = try run(dir, "compile", [app.build, app.cache, app.env])
        #expect(result.status == 1)
        #expect(result.stderr.contains("the download from http://127.0.0.1:"), "\(result.all)")
        #expect(result.stderr.contains("there is no Swift toolchain to build it"))
        #expect(files(dir + "/vendor").isEmpty)
    }

    /// Shims newer than the binary (the default branch between releases, had a maintainer changed
    /// the protocol without a release): the binary says which release to use, and runs nothing.
    @Test func aBinaryThatDoesNotKnowTheShimProtocolSaysWhichReleaseToUse() throws {
        let temp = try TempDir("protocol")
        let mp = try Multipack(in: temp)
        let locate = mp.dir + "/lib/locate-multipack.sh"
        let text = try String(contentsOfFile: locate, encoding: .utf8)
        #expect(text.contains("export MULTIPACK_SHIM_PROTOCOL=1@"))
        try text.replacing(/MULTIPACK_SHIM_PROTOCOL=1@[0-9.]*/, with: "MULTIPACK_SHIM_PROTOCOL=2@7.1.0")
            .write(toFile: locate, atomically: true, encoding: .utf8)
        let app = try app(in: temp)
        let compile = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(compile.status == 1)
        #expect(compile.stderr.contains("speak shim protocol 2, which multipack"), "\(compile.all)")
        #expect(compile.stderr.contains("Use multipack 7.1.0 or later"), "\(compile.all)")
        #expect(compile.stdout.isEmpty)
        let report = try mp.shim("report", [app.build, app.cache, app.env])
        #expect(report.status == 0, "\(report.all)")
    }
}
