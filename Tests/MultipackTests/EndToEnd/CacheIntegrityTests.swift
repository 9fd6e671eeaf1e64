import Foundation
import Testing

@testable import MultipackKit

/// SPEC §5: CACHE_DIR is shared with the children, so multipack trusts nothing in it.
@Suite struct CacheIntegrityTests {
    /// One archive child served from loopback, and a way to run compile against it.
    struct Setup {
        let temp: TempDir
        let server: LoopbackHTTPServer
        let app: App
        let mp: Multipack
        let digest: String

        init(
            _ name: String, pinned: Bool, child: String = "node",
            url: (LoopbackHTTPServer) -> String = { $0.url("/node.tgz") }
        ) throws {
            temp = try TempDir(name)
            let node = try ArchiveFetchTests.pack(child, "tgz", in: temp)
            digest = try ArchiveFetchTests.sha256(node, in: temp)
            server = try LoopbackHTTPServer(routes: ["/node.tgz": .serve(body: node, etag: "\"n1\"")])
            let line = url(server) + (pinned ? " sha256=\(digest)" : "")
            app = try App("python-node", in: temp, buildpacks: line + "\n")
            mp = try Multipack(in: temp)
        }

        var archive: String { app.cache + "/.multipack/archives/\(digest).archive" }

        func compile(_ environment: [String: String] = [:]) throws -> Output {
            try mp.shim(
                "compile", [app.build, app.cache, app.env],
                environment: environment.merging(["TMPDIR": temp.sub("tmp")]) { $1 })
        }
    }

    @Test(arguments: [true, false]) func aChangedArchiveIsDroppedAndFetchedAgain(pinned: Bool) throws {
        let setup = try Setup("tamper", pinned: pinned)
        defer { setup.server.stop() }
        #expect(try setup.compile().status == 0)
        #expect(FileManager.default.fileExists(atPath: setup.archive))
        // What a child could do through CACHE_DIR: change the cached buildpack's code.
        let handle = try #require(FileHandle(forWritingAtPath: setup.archive))
        handle.seekToEndOfFile()
        handle.write(Data("echo pwned\n".utf8))
        handle.closeFile()

        let warm = try setup.compile()
        #expect(warm.status == 0, "\(warm.all)")
        #expect(warm.stderr.contains("The cached archive sha256:\(setup.digest.prefix(12)) was changed on disk"))
        #expect(setup.server.requestCount("/node.tgz") == 2)
        // Fetched again in full, not revalidated against the changed copy.
        #expect(setup.server.requests("/node.tgz").last?.headers["if-none-match"] == nil)
        #expect(try Shell.run("sha256sum", [setup.archive]).stdout.hasPrefix(setup.digest))
    }

    @Test func aDamagedEntryIsDroppedNeverFatal() throws {
        let setup = try Setup("damaged", pinned: false)
        defer { setup.server.stop() }
        #expect(try setup.compile().status == 0)
        // Replaced by a directory, and the record by garbage.
        try FileManager.default.removeItem(atPath: setup.archive)
        try FileManager.default.createDirectory(atPath: setup.archive, withIntermediateDirectories: true)
        let record = setup.app.cache + "/.multipack/urls/" + cacheKey(setup.server.url("/node.tgz"))
        try Data([0xff, 0x00, 0x0a]).write(to: URL(fileURLWithPath: record))
        let warm = try setup.compile()
        #expect(warm.status == 0, "\(warm.all)")
        #expect(setup.server.requestCount("/node.tgz") == 2)
        #expect(try Shell.run("sha256sum", [setup.archive]).stdout.hasPrefix(setup.digest))
    }

    @Test func aForgedRecordNeverRunsADirectoryOutsideTheCache() throws {
        let setup = try Setup("forged", pinned: false)
        defer { setup.server.stop() }
        let url = setup.server.url("/node.tgz")
        // A buildpack outside the cache that says it ran.
        let evil = setup.temp.sub("evil")
        let marker = setup.temp.path + "/evil-ran"
        try setup.temp.write("evil/bin/detect", "#!/bin/sh\ntouch \(marker)\necho Evil\n", executable: true)
        try setup.temp.write("evil/bin/compile", "#!/bin/sh\ntouch \(marker)\n", executable: true)
        let relative = "../../../" + String(repeating: "./", count: 40)
        var forgedDigest = relative + String(evil.dropFirst())
        forgedDigest = String(forgedDigest.prefix(64)).padding(toLength: 64, withPad: "/", startingAt: 0)
        let urlDigest = try sha256Hex(of: Array(url.utf8))
        try FileManager.default.createDirectory(
            atPath: setup.app.cache + "/.multipack/urls", withIntermediateDirectories: true)
        try "\(url)\n\"n1\"\n\n\(forgedDigest)\n\(urlDigest)\n".write(
            toFile: setup.app.cache + "/.multipack/urls/" + cacheKey(url), atomically: true, encoding: .utf8)
        let compile = try setup.compile()
        #expect(compile.status == 0, "\(compile.all)")
        #expect(!FileManager.default.fileExists(atPath: marker))
        #expect(setup.server.requests("/node.tgz").first?.headers["if-none-match"] == nil)
    }

    /// A git entry's owner record is the masked URL. One written by an earlier version (the URL's
    /// SHA-256) is adopted without a new clone; one of another URL means a fresh clone.
    @Test func gitEntriesOfEarlierVersionsAreKeptAndForeignOnesRecloned() throws {
        let temp = try TempDir("git-owner")
        let repo = try gitChild("node", in: temp)
        let url = "file://\(repo)"
        let app = try App("python-node", in: temp, buildpacks: url + "\n")
        let mp = try Multipack(in: temp)
        let record = app.cache + "/.multipack/git/" + cacheKey(url) + "/url"
        let cold = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(cold.status == 0, "\(cold.all)")
        #expect(cold.stdout.contains("(cloned,"))
        #expect(try String(contentsOfFile: record, encoding: .utf8) == Masking.url(url))

        try sha256Hex(of: Array(url.utf8)).write(toFile: record, atomically: true, encoding: .utf8)
        let adopted = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(adopted.status == 0, "\(adopted.all)")
        #expect(adopted.stdout.contains("(cached,"), "\(adopted.stdout)")
        #expect(try String(contentsOfFile: record, encoding: .utf8) == Masking.url(url))

        try sha256Hex(of: Array("file:///another/repository".utf8)).write(
            toFile: record, atomically: true, encoding: .utf8)
        let foreign = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(foreign.status == 0, "\(foreign.all)")
        #expect(foreign.stdout.contains("(cloned,"), "\(foreign.stdout)")
    }

    /// An scp-like git reference with a password (`user:TOKEN@host:path`) leaves no trace of the
    /// password in the cache either, even when the fetch fails.
    @Test func anScpLikeReferencesPasswordStaysOutOfTheCache() throws {
        let temp = try TempDir("scp-owner")
        let app = try App(nil, in: temp, buildpacks: "deploy:s3cr3t-pass@127.0.0.1:org/repo.git\n")
        let mp = try Multipack(in: temp)
        let compile = try mp.shim(
            "compile", [app.build, app.cache, app.env], environment: ["GIT_SSH_COMMAND": "false"])
        #expect(compile.status != 0)
        #expect(!compile.all.contains("s3cr3t"), "\(compile.all)")
        let grep = try Shell.run("grep", ["-r", "-l", "-a", "-e", "s3cr3t", app.cache])
        #expect(grep.stdout.isEmpty, "\(grep.stdout)")
        let records = try Shell.run("sh", ["-c", "cat \"$0\"/.multipack/git/*/url", app.cache]).stdout
        #expect(records.contains("***@127.0.0.1:org/repo.git"), "\(records)")
    }

    @Test func recordsHoldNoCredentials() throws {
        let setup = try Setup("creds", pinned: false) {
            "http://deploy:s3cr3t-pass@127.0.0.1:\($0.port)/node.tgz?token=t0p-s3cr3t"
        }
        defer { setup.server.stop() }
        let compile = try setup.compile()
        #expect(compile.status == 0, "\(compile.all)")
        let grep = try Shell.run("grep", ["-r", "-l", "-a", "-e", "s3cr3t", setup.app.cache])
        #expect(grep.stdout.isEmpty, "\(grep.stdout)")
        // The record still serves its purpose: the next build revalidates.
        #expect(try setup.compile().stdout.contains("cached (304 not modified)"))
    }

    @Test func symlinksInTheCacheAreNotFollowed() throws {
        let setup = try Setup("symlinks", pinned: false)
        defer { setup.server.stop() }
        let outside = setup.temp.sub("outside")
        let root = setup.app.cache + "/.multipack"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        for name in ["archives", "urls", "staging", "git"] {
            try FileManager.default.createSymbolicLink(atPath: root + "/" + name, withDestinationPath: outside)
        }
        let compile = try setup.compile()
        #expect(compile.status == 0, "\(compile.all)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty)
        #expect(FileManager.default.fileExists(atPath: setup.archive))
    }

    /// Runs `script` as root of a new user and mount namespace, or returns nil where there is none.
    static func inNamespace(_ script: String, environment: [String: String]) throws -> Output? {
        guard try Shell.run("unshare", ["-Urm", "true"]).status == 0 else { return nil }
        return try Shell.run(
            "unshare", ["-Urm", "bash", "-c", script], environment: Multipack.environment(environment))
    }

    @Test func aReadOnlyCacheBuildsWithoutItAndWarns() throws {
        // A child that writes nothing into CACHE_DIR itself.
        let setup = try Setup("readonly", pinned: false, child: "env-probe")
        defer { setup.server.stop() }
        let compile = setup.mp.dir + "/bin/compile"
        let app = setup.app
        let script = """
            set -e
            mount --bind \(app.cache) \(app.cache)
            mount -o remount,bind,ro \(app.cache)
            \(compile) \(app.build) \(app.cache) \(app.env)
            """
        guard let output = try Self.inNamespace(script, environment: ["TMPDIR": setup.temp.sub("tmp")]) else {
            Issue.record("no user namespaces here")
            return
        }
        #expect(output.status == 0, "\(output.all)")
        #expect(output.stderr.contains("The cache cannot be used ("), "\(output.all)")
        #expect(
            output.stdout.contains(
                "[1/1] \(setup.server.url("/node.tgz")) @ sha256:\(setup.digest.prefix(12)) (downloaded"))
    }

    @Test func theCacheMayLiveOnAnotherFilesystemThanTMPDIR() throws {
        let setup = try Setup("crossfs", pinned: false)
        defer { setup.server.stop() }
        let git = try gitChild("python", in: setup.temp)
        try "\(setup.server.url("/node.tgz"))\nfile://\(git)\n".write(
            toFile: setup.app.build + "/.buildpacks", atomically: true, encoding: .utf8)
        let compile = setup.mp.dir + "/bin/compile"
        let app = setup.app
        let script = """
            set -e
            mount -t tmpfs -o size=64m multipack-cache \(app.cache)
            \(compile) \(app.build) \(app.cache) \(app.env)
            echo "=== second build"
            \(compile) \(app.build) \(app.cache) \(app.env)
            """
        guard let output = try Self.inNamespace(script, environment: ["TMPDIR": setup.temp.sub("tmp")]) else {
            Issue.record("no user namespaces here")
            return
        }
        #expect(output.status == 0, "\(output.all)")
        #expect(!output.all.contains("cross-device"))
        let second = try #require(output.stdout.components(separatedBy: "=== second build").last)
        #expect(second.contains("cached (304 not modified)"), "\(second)")
        #expect(second.contains("[2/2] file://\(git) @ ") && second.contains("(cached,"), "\(second)")
    }
}
