import Foundation
import Testing

/// SPEC §5 and §9 as a user sees them in the build log: progress, retries, limits, HTML pages.
@Suite struct DownloadTests {
    @Test func aThrottledDownloadShowsProgressWithinASecondAndAnnouncesRetries() throws {
        let temp = try TempDir("progress")
        let node = try ArchiveFetchTests.pack("node", "tgz", in: temp)
        // Padded so that the transfer takes about three seconds at 20 kB every 100 ms.
        var body = node
        body += [UInt8](repeating: 0, count: 600_000 - node.count)
        let server = try LoopbackHTTPServer(routes: [
            "/node.tgz": .sequence([.status(503), .trickle(body: body, chunk: 20_000, pause: .milliseconds(100))])
        ])
        defer { server.stop() }
        let app = try App("python-node", in: temp, buildpacks: server.url("/node.tgz") + "\n")
        let build = try BackgroundCompile(try Multipack(in: temp), app, temp: temp)
        #expect(build.wait(until: { server.requestCount("/node.tgz") >= 2 }))
        let second = Date()
        #expect(build.wait(until: { build.output.contains("       Downloading ") }, seconds: 10))
        let firstLine = Date().timeIntervalSince(second)
        _ = build.finish()
        let output = build.output
        #expect(firstLine < 1.5, "first progress line after \(firstLine) s")
        #expect(output.contains("\(server.url("/node.tgz")): retrying in 2 s after HTTP 503 (attempt 2 of 4)"))
        let line = try #require(output.split(separator: "\n").first { $0.contains("Downloading ") })
        #expect(line.contains("of 600.0 kB ("), "\(line)")
        #expect(line.contains("%), ") && line.contains("/s, ") && line.hasSuffix(" left"), "\(line)")
        #expect(!output.contains("\r"))
    }

    @Test func aDownloadOverTheLimitIsRefused() throws {
        let temp = try TempDir("maxdl")
        let server = try LoopbackHTTPServer(routes: [
            "/huge.tgz": .serve(body: [UInt8](repeating: 0x1f, count: 3 * 1024 * 1024))
        ])
        defer { server.stop() }
        let app = try App(
            nil, in: temp, buildpacks: server.url("/huge.tgz") + "\n", config: ["MULTIPACK_MAX_DOWNLOAD": "1M"])
        let mp = try Multipack(in: temp)
        let compile = try mp.shim(
            "compile", [app.build, app.cache, app.env], environment: ["TMPDIR": temp.sub("tmp")])
        #expect(compile.status == 1)
        #expect(compile.stderr.contains("more than MULTIPACK_MAX_DOWNLOAD allows (1048576 bytes)"), "\(compile.all)")
        #expect(server.requestCount("/huge.tgz") == 1)

        let badTemp = try TempDir("maxdl-bad")
        let bad = try App(nil, in: badTemp, buildpacks: "x/y\n", config: ["MULTIPACK_MAX_DOWNLOAD": "9Q"])
        let usage = try mp.shim("compile", [bad.build, bad.cache, bad.env])
        #expect(usage.status == 2)
        #expect(usage.stderr.contains("MULTIPACK_MAX_DOWNLOAD has the value `9Q`"))
    }

    @Test func anHTMLPageIsNamedAsSuch() throws {
        let temp = try TempDir("htmlpage")
        let page = "<!doctype html><html><head><title>Captive Portal Login</title></head><body></body></html>"
        let server = try LoopbackHTTPServer(routes: ["/bp.tgz": .serve(body: Array(page.utf8))])
        defer { server.stop() }
        let app = try App(nil, in: temp, buildpacks: server.url("/bp.tgz") + "\n")
        let compile = try Multipack(in: temp).shim(
            "compile", [app.build, app.cache, app.env], environment: ["TMPDIR": temp.sub("tmp")])
        #expect(compile.status == 1)
        #expect(compile.stderr.contains("answered with an HTML page (HTTP 200, title \"Captive Portal Login\")"))
        #expect(!compile.stderr.contains("truncated"))
        #expect(server.requestCount("/bp.tgz") == 1)
    }

    @Test func aFailureCancelsTheDownloadsInFlight() throws {
        let temp = try TempDir("cancel-inflight")
        let server = try LoopbackHTTPServer(routes: [
            "/stalled.tgz": .stall(body: [UInt8](repeating: 0x1f, count: 100_000), after: 1000),
            "/missing.tgz": .status(404),
        ])
        defer { server.stop() }
        let list = [server.url("/stalled.tgz"), server.url("/missing.tgz")].joined(separator: "\n")
        let app = try App(nil, in: temp, buildpacks: list)
        let started = Date()
        let compile = try Multipack(in: temp).shim(
            "compile", [app.build, app.cache, app.env], environment: ["TMPDIR": temp.sub("tmp")])
        let seconds = Date().timeIntervalSince(started)
        #expect(compile.status == 1)
        #expect(compile.stderr.contains("Failed to fetch buildpack [2/2]"), "\(compile.all)")
        #expect(compile.stderr.contains("HTTP 404"))
        // The stalled download would hold the build for 30 s, then retry.
        #expect(seconds < 10, "took \(seconds) s")
    }

    @Test func aFailureStopsAGitFetchInFlight() throws {
        let temp = try TempDir("cancel-git")
        // A git server that answers the first request and then sends nothing more.
        let server = try LoopbackHTTPServer(routes: [
            "/repo.git/info/refs": .stall(body: [UInt8](repeating: 0x30, count: 10_000), after: 10),
            "/late.tgz": .delayed(.seconds(1), .status(404)),
        ])
        defer { server.stop() }
        let app = try App(nil, in: temp, buildpacks: server.url("/repo.git") + "\n" + server.url("/late.tgz") + "\n")
        let started = Date()
        let compile = try Multipack(in: temp).shim(
            "compile", [app.build, app.cache, app.env], environment: ["TMPDIR": temp.sub("tmp")])
        let seconds = Date().timeIntervalSince(started)
        #expect(compile.status == 1)
        #expect(compile.stderr.contains("Failed to fetch buildpack [2/2]"), "\(compile.all)")
        #expect(server.requestCount("/repo.git/info/refs") == 1)
        #expect(seconds < 10, "took \(seconds) s")
    }

    @Test func aStallIsATransientFailureRetriedWithinTheDeadline() throws {
        let temp = try TempDir("stall-retry")
        let node = try ArchiveFetchTests.pack("node", "tgz", in: temp)
        let server = try LoopbackHTTPServer(routes: [
            "/node.tgz": .sequence([.stall(body: node, after: 100), .serve(body: node)])
        ])
        defer { server.stop() }
        let app = try App("python-node", in: temp, buildpacks: server.url("/node.tgz") + "\n")
        let compile = try Multipack(in: temp).shim(
            "compile", [app.build, app.cache, app.env],
            environment: ["TMPDIR": temp.sub("tmp"), "MULTIPACK_STALL_SECONDS": "1"])
        #expect(compile.status == 0, "\(compile.all)")
        #expect(compile.stdout.contains("retrying in 2 s after a stall (attempt 2 of 4)"))
        #expect(server.requestCount("/node.tgz") == 2)
    }
}
