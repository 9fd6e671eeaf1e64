import Foundation
import Testing

/// Archive URLs and registry names, served by a loopback HTTP server the test starts.
@Suite struct ArchiveFetchTests {
    /// A fixture buildpack packed as `format` with a GitHub-style top directory.
    static func pack(_ child: String, _ format: String, in temp: TempDir) throws -> [UInt8] {
        let stage = temp.sub("pack-\(child)-\(format)")
        try FileManager.default.copyItem(
            atPath: Repo.fixtures + "/buildpacks/" + child, toPath: stage + "/\(child)-main")
        let out = temp.path + "/\(child).\(format)"
        let flag = ["tgz": "-czf", "tar.gz": "-czf", "tar.xz": "-cJf", "txz": "-cJf", "tar": "-cf"][format]!
        let result = try Shell.run("tar", ["-C", stage, flag, out, "\(child)-main"])
        if result.status != 0 { throw TestFailure(result.all) }
        return Array(try Data(contentsOf: URL(fileURLWithPath: out)))
    }

    static func sha256(_ bytes: [UInt8], in temp: TempDir) throws -> String {
        let path = temp.path + "/digest-input"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return String(try Shell.run("sha256sum", [path]).stdout.prefix(64))
    }

    @Test func everyArchiveFormAndARegistryName() throws {
        let temp = try TempDir("archives")
        let server = try LoopbackHTTPServer(routes: [
            "/node.tgz": .serve(body: try Self.pack("node", "tgz", in: temp), etag: "\"n1\""),
            "/dl/python.tar.xz": .serve(body: try Self.pack("python", "tar.xz", in: temp)),
            "/registry/fixtures/path-replacer.tgz": .serve(body: try Self.pack("path-replacer", "tgz", in: temp)),
            "/tester.txz": .serve(body: try Self.pack("tester", "txz", in: temp)),
        ])
        defer { server.stop() }
        let probe = try Self.pack("env-probe", "tar", in: temp)
        try Data(probe).write(to: URL(fileURLWithPath: temp.path + "/probe.tar"))
        let list = """
            \(server.url("/node.tgz"))?token=abc
            \(server.url("/dl/python.tar.xz"))
            urn:buildpack:fixtures/path-replacer
            \(server.url("/tester.txz"))
            file://\(temp.path)/probe.tar
            """
        let app = try App(
            "python-node", in: temp, buildpacks: list, config: ["MULTIPACK_REGISTRY_URL": server.url("/registry")])
        let mp = try Multipack(in: temp)
        let compile = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(compile.status == 0, "\(compile.all)")
        #expect(compile.stdout.contains("found v20.0.0-fixture"))
        #expect(compile.stdout.contains("[1/5] \(server.url("/node.tgz"))?token=*** @ sha256:"))
        #expect(!compile.all.contains("token=abc"))
        let probeText = try #require(app.read("env-probe.txt"))
        #expect(probeText.contains("tool=\(app.build)/.tools/bin/tool"))
        #expect(app.exists("tester-compiled"))
        #expect(server.requestCount("/registry/fixtures/path-replacer.tgz") == 1)
    }

    @Test func pinsAreVerifiedAndWarmBuildsAskOnlyWhatTheyMust() throws {
        let temp = try TempDir("pins")
        let node = try Self.pack("node", "tar.gz", in: temp)
        let probe = try Self.pack("env-probe", "tgz", in: temp)
        let server = try LoopbackHTTPServer(routes: [
            "/node.tar.gz": .serve(body: node, etag: "\"node-1\""),
            "/probe.tgz": .serve(body: probe, lastModified: "Sat, 21 Nov 2026 10:00:00 GMT"),
        ])
        let digest = try Self.sha256(node, in: temp)
        let list = "\(server.url("/node.tar.gz")) sha256=\(digest)\n\(server.url("/probe.tgz"))\n"
        let app = try App("python-node", in: temp, buildpacks: list)
        let mp = try Multipack(in: temp)
        let cold = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(cold.status == 0, "\(cold.all)")
        #expect(cold.stdout.contains("@ sha256:\(digest.prefix(12))"))
        #expect(server.requestCount("/node.tar.gz") == 1 && server.requestCount("/probe.tgz") == 1)

        let warm = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(warm.status == 0, "\(warm.all)")
        // The pinned archive: no request. The unpinned one: one conditional request, answered 304.
        #expect(server.requestCount("/node.tar.gz") == 1)
        #expect(server.requestCount("/probe.tgz") == 2)
        #expect(server.requests("/probe.tgz").last?.headers["if-modified-since"] == "Sat, 21 Nov 2026 10:00:00 GMT")
        #expect(warm.stdout.contains("cached (304 not modified)"))
        #expect(warm.stdout.contains("this is build 2 with this cache"))

        // The server goes away: the pinned child needs nothing, the unpinned one is used from the cache.
        server.stop()
        let offline = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(offline.status == 0, "\(offline.all)")
        #expect(offline.stderr.contains(" !     Could not reach \(server.url("/probe.tgz"))"))
        #expect(offline.stdout.contains("cached (network failed)"))
    }

    @Test func aPinThatDoesNotMatchFailsShowingBothDigests() throws {
        let temp = try TempDir("badpin")
        let node = try Self.pack("node", "tgz", in: temp)
        let server = try LoopbackHTTPServer(routes: ["/node.tgz": .serve(body: node)])
        defer { server.stop() }
        let wrong = String(repeating: "0", count: 64)
        let app = try App("python-node", in: temp, buildpacks: "\(server.url("/node.tgz")) sha256=\(wrong)\n")
        let mp = try Multipack(in: temp)
        let compile = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(compile.status == 1)
        #expect(compile.stderr.contains("expected \(wrong)"))
        #expect(compile.stderr.contains("actual   \(try Self.sha256(node, in: temp))"))
        #expect(compile.stderr.contains("Failed to fetch buildpack [1/1]"))
        #expect(!FileManager.default.fileExists(atPath: app.cache + "/.multipack/archives/\(wrong)"))
    }

    @Test func httpFailuresAreNamedAndSecretsStayHidden() throws {
        let temp = try TempDir("httpfail")
        let node = try Self.pack("node", "tgz", in: temp)
        let server = try LoopbackHTTPServer(routes: [
            "/flaky.tgz": .sequence([.status(500), .serve(body: node)]),
            "/gone.tgz": .status(404),
        ])
        defer { server.stop() }
        let mp = try Multipack(in: temp)
        let flaky = try App("python-node", in: temp, buildpacks: server.url("/flaky.tgz") + "\n")
        let retried = try mp.shim("compile", [flaky.build, flaky.cache, flaky.env])
        #expect(retried.status == 0, "\(retried.all)")
        #expect(server.requestCount("/flaky.tgz") == 2)

        let secret =
            server.url("/gone.tgz").replacingOccurrences(of: "http://", with: "http://bob:s3cr3t-pw@")
            + "?token=t0k3n-value"
        try (secret + "\n").write(toFile: flaky.build + "/.buildpacks", atomically: true, encoding: .utf8)
        let gone = try mp.shim(
            "compile", [flaky.build, flaky.cache, flaky.env], environment: ["BUILDPACK_XTRACE": "1"])
        #expect(gone.status == 1)
        #expect(server.requestCount("/gone.tgz") == 1, "a 404 is not retried")
        #expect(gone.stderr.contains("HTTP 404"))
        #expect(gone.stderr.contains("http://***@127.0.0.1:\(server.port)/gone.tgz?token=***"))
        for secret in ["s3cr3t-pw", "t0k3n-value", "bob"] { #expect(!gone.all.contains(secret)) }
    }

    @Test func aHostileArchiveIsRefusedNamingTheMember() throws {
        let temp = try TempDir("hostile")
        let stage = temp.sub("evil")
        try temp.write("evil/bp/bin/detect", "#!/bin/sh\necho evil\n", executable: true)
        try temp.write("evil/escape", "outside\n")
        let out = temp.path + "/evil.tar"
        // GNU tar keeps the ../ member when told to.
        let made = try Shell.run("tar", ["-C", stage + "/bp", "-cf", out, "-P", "bin", "../escape"])
        #expect(made.status == 0, "\(made.all)")
        let server = try LoopbackHTTPServer(routes: [
            "/evil.tar": .serve(body: Array(try Data(contentsOf: URL(fileURLWithPath: out))))
        ])
        defer { server.stop() }
        let app = try App(nil, in: temp, buildpacks: server.url("/evil.tar") + "\n")
        let mp = try Multipack(in: temp)
        let compile = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(compile.status == 1)
        #expect(compile.stderr.contains("../escape"))
        #expect(compile.stderr.contains("Failed to fetch buildpack [1/1]"))
        // Nothing entered the cache, and the staging area is gone.
        #expect(
            ((try? FileManager.default.contentsOfDirectory(atPath: app.cache + "/.multipack/archives")) ?? []).isEmpty)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory())
        #expect(!leftovers.contains { $0 == "escape" })
    }

    @Test func aPathFortyThousandDirectoriesDeepIsRefusedPromptlyAndNotCached() throws {
        let temp = try TempDir("deep")
        var tar = RawTar()
        tar.pax([("path", String(repeating: "d/", count: 40_000) + "f")])
        tar.file("placeholder", "x")
        tar.end()
        let box = try Sandbox()
        let server = try LoopbackHTTPServer(routes: ["/deep.tgz": .serve(body: try box.gzip(tar.bytes))])
        defer { server.stop() }
        let app = try App(nil, in: temp, buildpacks: server.url("/deep.tgz") + "\n")
        let mp = try Multipack(in: temp)
        let start = ContinuousClock.now
        let compile = try mp.shim(
            "compile", [app.build, app.cache, app.env], environment: ["TMPDIR": temp.sub("tmp")])
        #expect(ContinuousClock.now - start < .seconds(10))
        #expect(compile.status == 1)
        #expect(compile.stderr.contains("Refused archive member 'd/d/d/"))
        #expect(compile.stderr.contains("more than the 4096 allowed"))
        #expect(!compile.all.contains("CocoaError"))
        #expect(
            ((try? FileManager.default.contentsOfDirectory(atPath: app.cache + "/.multipack/archives")) ?? []).isEmpty)
    }

    @Test func twoBuildsAtOnceShareOneCache() throws {
        let temp = try TempDir("concurrent")
        let server = try LoopbackHTTPServer(routes: [
            "/node.tgz": .serve(body: try Self.pack("node", "tgz", in: temp), etag: "\"a\""),
            "/probe.tgz": .serve(body: try Self.pack("env-probe", "tgz", in: temp), etag: "\"b\""),
        ])
        defer { server.stop() }
        let git = try gitChild("python", in: temp)
        let list = "\(server.url("/node.tgz"))\n\(server.url("/probe.tgz"))\nfile://\(git)\n"
        let cache = temp.sub("shared-cache")
        // Held for the whole test, and removed at its end like every TempDir.
        let appDirs = try (1...2).map { try TempDir("concurrent-\($0)") }
        defer { withExtendedLifetime(appDirs) {} }
        let apps = try appDirs.map { try App("python-node", in: $0, buildpacks: list) }
        let mp = try Multipack(in: temp)
        let results = Mutex2<[Output]>([])
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            let out = try! mp.shim("compile", [apps[i].build, cache, apps[i].env])
            results.append(out)
        }
        for out in results.value { #expect(out.status == 0, "\(out.all)") }
        // Both entries sit in the cache once, whole.
        let archives = try FileManager.default.contentsOfDirectory(atPath: cache + "/.multipack/archives")
        #expect(archives.count == 2)
        // Each is the archive itself, named by its digest.
        for name in archives {
            let digest = try Shell.run("sha256sum", [cache + "/.multipack/archives/" + name]).stdout.prefix(64)
            #expect(name == "\(digest).archive")
        }
    }
}

final class Mutex2<T>: @unchecked Sendable {
    private var storage: T
    private let lock = NSLock()
    init(_ value: T) { storage = value }
    var value: T { lock.withLock { storage } }
    func append<E>(_ element: E) where T == [E] { lock.withLock { storage.append(element) } }
}

@Suite struct PrefetchTests {
    @Test func theFirstFailureIsReportedAndFetchesNotYetStartedAreCancelled() throws {
        let temp = try TempDir("cancel")
        let node = try ArchiveFetchTests.pack("node", "tgz", in: temp)
        var routes: [String: LoopbackHTTPServer.Behaviour] = [:]
        // Slow enough that the failure of entry 1 is known before a worker is free again.
        for n in 2...7 {
            routes["/bp\(n).tgz"] = .trickle(body: node, chunk: node.count / 2 + 1, pause: .milliseconds(400))
        }
        let server = try LoopbackHTTPServer(routes: routes)
        defer { server.stop() }
        // The first fails at once: an archive that is not there.
        let list = ["file:///no-such-directory/bp.tgz"] + (2...7).map { server.url("/bp\($0).tgz") }
        let app = try App("python-node", in: temp, buildpacks: list.joined(separator: "\n"))
        let mp = try Multipack(in: temp)
        let compile = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(compile.status == 1)
        #expect(
            compile.stderr.contains("Failed to fetch buildpack [1/7] file:///no-such-directory/bp.tgz"),
            "\(compile.all)")
        // At most entries 2-4 were running on the other three workers when it failed; 5-7 never started.
        #expect((2...4).map { server.requestCount("/bp\($0).tgz") }.allSatisfy { $0 <= 1 })
        #expect((5...7).map { server.requestCount("/bp\($0).tgz") } == [0, 0, 0])
    }
}
