import Synchronization
import Testing

@testable import MultipackKit

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct HTTPClientTests {
    private let scratch = Scratch()
    /// libcurl's timeouts follow the real clock; the backoff waits are recorded instead of slept.
    private let sleeps = TestClock(realTime: true)

    private var client: HTTPClient {
        HTTPClient(backoffBase: .milliseconds(100), progressInterval: .seconds(5), clock: sleeps)
    }

    static let body: [UInt8] = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 / 251) }

    @Test func downloadsABodyWithItsValidators() throws {
        let server = try LoopbackHTTPServer(routes: [
            "/bp.tgz": .serve(body: Self.body, etag: "\"v1\"", lastModified: "Wed, 21 Oct 2015 07:28:00 GMT")
        ])
        defer { server.stop() }
        let path = scratch.path("bp.tgz.part")

        let result = try client.download(DownloadRequest(url: server.url("/bp.tgz")), to: path, progress: nil)

        #expect(
            result
                == .downloaded(
                    bytes: Int64(Self.body.count), etag: "\"v1\"", lastModified: "Wed, 21 Oct 2015 07:28:00 GMT",
                    effectiveURL: server.url("/bp.tgz")))
        #expect(Scratch.contents(path) == Self.body)
        #expect(server.requestCount("/bp.tgz") == 1)
        #expect(server.requests("/bp.tgz").first?.headers["user-agent"] == "multipack")
    }

    @Test func notFoundFailsAtOnceWithTheStatus() throws {
        let server = try LoopbackHTTPServer(routes: ["/missing.tgz": .status(404)])
        defer { server.stop() }
        let path = scratch.path("missing.part")

        let error = #expect(throws: HTTPError.self) {
            try client.download(DownloadRequest(url: server.url("/missing.tgz")), to: path, progress: nil)
        }

        #expect(error?.kind == .status(404))
        #expect(error?.isTransient == false)
        #expect(error?.attempts == 1)
        #expect(error?.description.hasPrefix("HTTP 404 (Not Found) from \(server.url("/missing.tgz")).") == true)
        #expect(server.requestCount("/missing.tgz") == 1)
        #expect(sleeps.sleeps.isEmpty)
        #expect(!Scratch.exists(path))
    }

    @Test func serverErrorIsRetriedWithBackoff() throws {
        let server = try LoopbackHTTPServer(routes: [
            "/flaky.tgz": .sequence([.status(500), .serve(body: Self.body)])
        ])
        defer { server.stop() }
        let path = scratch.path("flaky.part")

        let result = try client.download(DownloadRequest(url: server.url("/flaky.tgz")), to: path, progress: nil)

        #expect(
            result
                == .downloaded(
                    bytes: Int64(Self.body.count), etag: nil, lastModified: nil, effectiveURL: server.url("/flaky.tgz"))
        )
        #expect(server.requestCount("/flaky.tgz") == 2)
        #expect(sleeps.sleeps == [.milliseconds(100)])
        #expect(Scratch.contents(path) == Self.body)
    }

    @Test func persistentServerErrorGivesUpAfterTheRetries() throws {
        let server = try LoopbackHTTPServer(routes: ["/down.tgz": .status(503)])
        defer { server.stop() }
        let path = scratch.path("down.part")

        let error = #expect(throws: HTTPError.self) {
            try client.download(DownloadRequest(url: server.url("/down.tgz"), maxRetries: 3), to: path, progress: nil)
        }

        #expect(error?.kind == .status(503))
        #expect(error?.attempts == 4)
        #expect(error?.description.hasSuffix("Gave up after 4 attempts.") == true)
        #expect(server.requestCount("/down.tgz") == 4)
        #expect(sleeps.sleeps == [.milliseconds(100), .milliseconds(200), .milliseconds(400)])
        #expect(!Scratch.exists(path))
    }

    @Test func droppedConnectionIsRetried() throws {
        let server = try LoopbackHTTPServer(routes: [
            "/drop.tgz": .sequence([.dropMidBody(body: Self.body, after: 70_000), .serve(body: Self.body)])
        ])
        defer { server.stop() }
        let path = scratch.path("drop.part")

        let result = try client.download(DownloadRequest(url: server.url("/drop.tgz")), to: path, progress: nil)

        #expect(
            result
                == .downloaded(
                    bytes: Int64(Self.body.count), etag: nil, lastModified: nil, effectiveURL: server.url("/drop.tgz")))
        #expect(server.requestCount("/drop.tgz") == 2)
        #expect(Scratch.contents(path) == Self.body)
    }

    @Test func connectionDroppedEveryTimeLeavesNoPartialFile() throws {
        let server = try LoopbackHTTPServer(routes: ["/drop.tgz": .dropMidBody(body: Self.body, after: 70_000)])
        defer { server.stop() }
        let path = scratch.path("drop.part")

        let error = #expect(throws: HTTPError.self) {
            try client.download(DownloadRequest(url: server.url("/drop.tgz"), maxRetries: 1), to: path, progress: nil)
        }

        #expect(error?.kind == .truncated)
        #expect(error?.attempts == 2)
        #expect(error?.description.contains("received 70000 of 200000 bytes") == true)
        #expect(server.requestCount("/drop.tgz") == 2)
        #expect(!Scratch.exists(path))
    }

    @Test func stalledServerTimesOutWithinTheLimit() throws {
        let server = try LoopbackHTTPServer(routes: ["/stall.tgz": .stall(body: Self.body, after: 1000)])
        defer { server.stop() }
        let path = scratch.path("stall.part")
        let request = DownloadRequest(
            url: server.url("/stall.tgz"), timeout: .seconds(1), maxRetries: 0, stallWindow: .seconds(60))
        let clock = ContinuousClock()
        let started = clock.now

        let error = #expect(throws: HTTPError.self) {
            try client.download(request, to: path, progress: nil)
        }

        #expect(clock.now - started < .seconds(3))
        #expect(error?.kind == .timeout)
        #expect(error?.isTransient == true)
        #expect(error?.description.contains("did not finish within 1 second") == true)
        #expect(error?.description.contains("MULTIPACK_FETCH_TIMEOUT") == true)
        #expect(!Scratch.exists(path))
    }

    @Test func stallIsCaughtByTheLowSpeedLimitBeforeTheOverallTimeout() throws {
        let server = try LoopbackHTTPServer(routes: ["/stall.tgz": .stall(body: Self.body, after: 1000)])
        defer { server.stop() }
        let path = scratch.path("stall.part")
        let request = DownloadRequest(
            url: server.url("/stall.tgz"), timeout: .seconds(60), maxRetries: 0, stallWindow: .seconds(1))
        let clock = ContinuousClock()
        let started = clock.now

        let error = #expect(throws: HTTPError.self) {
            try client.download(request, to: path, progress: nil)
        }

        #expect(clock.now - started < .seconds(4))
        #expect(error?.kind == .timeout)
        #expect(error?.description.contains("no data arrived for 1 second (received 1000 of 200000 bytes)") == true)
        #expect(error?.isTransient == true)
        #expect(!Scratch.exists(path))
    }

    @Test func redirectChainIsFollowed() throws {
        let server = try LoopbackHTTPServer(routes: [
            "/first": .redirect(to: "/second", status: 301),
            "/second": .redirect(to: "/third"),
            "/third": .redirect(to: "/final.tgz", status: 307),
            "/final.tgz": .serve(body: Self.body),
        ])
        defer { server.stop() }
        let path = scratch.path("final.part")

        let result = try client.download(DownloadRequest(url: server.url("/first")), to: path, progress: nil)

        #expect(
            result
                == .downloaded(
                    bytes: Int64(Self.body.count), etag: nil, lastModified: nil, effectiveURL: server.url("/final.tgz"))
        )
        for step in ["/first", "/second", "/third", "/final.tgz"] {
            #expect(server.requestCount(step) == 1)
        }
        #expect(Scratch.contents(path) == Self.body)
    }

    @Test func redirectLoopStopsAfterTenRedirects() throws {
        let server = try LoopbackHTTPServer(routes: ["/loop": .redirect(to: "/loop")])
        defer { server.stop() }
        let path = scratch.path("loop.part")

        let error = #expect(throws: HTTPError.self) {
            try client.download(DownloadRequest(url: server.url("/loop")), to: path, progress: nil)
        }

        #expect(error?.isTransient == false)
        #expect(error?.description.contains("redirected too many times") == true)
        #expect(server.requestCount("/loop") == 11)
        #expect(!Scratch.exists(path))
    }

    @Test func conditionalRequestAnsweredWith304IsNotModified() throws {
        let lastModified = "Wed, 21 Oct 2015 07:28:00 GMT"
        let server = try LoopbackHTTPServer(routes: [
            "/bp.tgz": .serve(body: Self.body, etag: "\"v2\"", lastModified: lastModified)
        ])
        defer { server.stop() }
        let path = scratch.path("bp.part")

        let byETag = try client.download(
            DownloadRequest(url: server.url("/bp.tgz"), ifNoneMatch: "\"v2\""), to: path, progress: nil)
        let byDate = try client.download(
            DownloadRequest(url: server.url("/bp.tgz"), ifModifiedSince: lastModified), to: path, progress: nil)
        let stale = try client.download(
            DownloadRequest(url: server.url("/bp.tgz"), ifNoneMatch: "\"v1\""), to: path, progress: nil)

        #expect(byETag == .notModified)
        #expect(byDate == .notModified)
        #expect(
            stale
                == .downloaded(
                    bytes: Int64(Self.body.count), etag: "\"v2\"", lastModified: lastModified,
                    effectiveURL: server.url("/bp.tgz")))
        let requests = server.requests("/bp.tgz")
        #expect(requests.map { $0.headers["if-none-match"] } == ["\"v2\"", nil, "\"v1\""])
        #expect(requests.map { $0.headers["if-modified-since"] } == [nil, lastModified, nil])
    }

    @Test func notModifiedLeavesNoFile() throws {
        let server = try LoopbackHTTPServer(routes: ["/bp.tgz": .serve(body: Self.body, etag: "\"v3\"")])
        defer { server.stop() }
        let path = scratch.path("bp.part")

        let result = try client.download(
            DownloadRequest(url: server.url("/bp.tgz"), ifNoneMatch: "\"v3\""), to: path, progress: nil)

        #expect(result == .notModified)
        #expect(!Scratch.exists(path))
    }

    @Test func credentialsInTheURLAreUsedButNeverShown() throws {
        let server = try LoopbackHTTPServer(routes: ["/private.tgz": .status(403)])
        defer { server.stop() }
        let url = "http://deploy:s3cr3t-pass@127.0.0.1:\(server.port)/private.tgz?token=t0p-s3cr3t&sig=abc123xyz"

        let error = #expect(throws: HTTPError.self) {
            try client.download(DownloadRequest(url: url), to: scratch.path("private.part"), progress: nil)
        }

        let description = try #require(error?.description)
        for secret in ["deploy", "s3cr3t-pass", "t0p-s3cr3t", "abc123xyz"] {
            #expect(!description.contains(secret))
            #expect(!String(describing: error).contains(secret))
        }
        #expect(
            description.contains(
                "HTTP 403 (Forbidden) from http://***@127.0.0.1:\(server.port)/private.tgz?token=***&sig=***"))
        // Basic auth for deploy:s3cr3t-pass: the credentials were sent, only hidden from the output.
        #expect(server.requests("/private.tgz").first?.headers["authorization"] == "Basic ZGVwbG95OnMzY3IzdC1wYXNz")
    }

    @Test func refusedConnectionIsTransient() throws {
        let port = try Scratch.unusedPort()
        let error = #expect(throws: HTTPError.self) {
            try client.download(
                DownloadRequest(url: "http://127.0.0.1:\(port)/bp.tgz", maxRetries: 1),
                to: scratch.path("refused.part"),
                progress: nil)
        }

        guard case .network(let code, _)? = error?.kind else {
            Issue.record("expected a network error, got \(String(describing: error))")
            return
        }
        #expect(code == 7)
        #expect(error?.isTransient == true)
        #expect(error?.attempts == 2)
        #expect(error?.description.contains("could not be reached or refused the connection") == true)
        #expect(sleeps.sleeps == [.milliseconds(100)])
    }

    @Test func fileURLsAreCopied() throws {
        let source = scratch.path("source.tgz")
        Scratch.write(source, Self.body)
        let path = scratch.path("copy.part")

        let result = try client.download(DownloadRequest(url: "file://\(source)"), to: path, progress: nil)

        guard case .downloaded(let bytes, _, _, let effectiveURL) = result else {
            Issue.record("expected a download, got \(result)")
            return
        }
        #expect(bytes == Int64(Self.body.count))
        #expect(effectiveURL == "file://\(source)")
        #expect(Scratch.contents(path) == Self.body)
    }

    @Test func missingFileURLFailsWithoutRetrying() throws {
        let path = scratch.path("copy.part")
        let error = #expect(throws: HTTPError.self) {
            try client.download(DownloadRequest(url: "file://\(scratch.path("absent.tgz"))"), to: path, progress: nil)
        }

        #expect(error?.isTransient == false)
        #expect(error?.attempts == 1)
        #expect(error?.description.contains("the file could not be read") == true)
        #expect(!Scratch.exists(path))
    }

    @Test func unwritableDestinationIsAFileSystemError() throws {
        let server = try LoopbackHTTPServer(routes: ["/bp.tgz": .serve(body: Self.body)])
        defer { server.stop() }
        let error = #expect(throws: HTTPError.self) {
            try client.download(
                DownloadRequest(url: server.url("/bp.tgz")), to: scratch.path("no/such/dir/bp.part"), progress: nil)
        }

        #expect(error?.isTransient == false)
        #expect(error?.description.contains("No such file or directory") == true)
    }

    @Test func progressIsReportedWhileTheBodyArrives() throws {
        let server = try LoopbackHTTPServer(routes: [
            "/slow.tgz": .trickle(body: Self.body, chunk: 50_000, pause: .milliseconds(120))
        ])
        defer { server.stop() }
        let reports = Mutex<[DownloadProgress]>([])
        let client = HTTPClient(
            progressInterval: .milliseconds(100), firstProgress: .milliseconds(100), clock: sleeps)

        _ = try client.download(DownloadRequest(url: server.url("/slow.tgz")), to: scratch.path("slow.part")) {
            report in
            reports.withLock { $0.append(report) }
        }

        let seen = reports.withLock { $0 }
        #expect(!seen.isEmpty)
        #expect(seen.map(\.bytes) == seen.map(\.bytes).sorted())
        #expect(seen.allSatisfy { $0.total == Int64(Self.body.count) && $0.url == server.url("/slow.tgz") })
        #expect(
            seen.allSatisfy {
                $0.line.hasPrefix("       Downloading \(server.url("/slow.tgz")) ") && !$0.line.contains("\r")
            })
    }

    @Test func aSlowDownloadReportsFirstAfterOneSecond() throws {
        let server = try LoopbackHTTPServer(routes: [
            "/slow.tgz": .trickle(body: Self.body, chunk: 20_000, pause: .milliseconds(200))
        ])
        defer { server.stop() }
        // A test clock that moves 100 ms each time it is read: the transfer reads it once per
        // check, so the first report comes with the first check at or after one second of it,
        // whatever the machine's load.
        let clock = TestClock(step: .milliseconds(100))
        let times = Mutex<[Duration]>([])

        _ = try HTTPClient(clock: clock).download(
            DownloadRequest(url: server.url("/slow.tgz")), to: scratch.path("slow.part")
        ) { _ in
            times.withLock { $0.append(clock.now) }
        }

        let seen = times.withLock { $0 }
        #expect(seen.count >= 1)
        // The transfer started at 0.1 s on it, so the check that reported read 1.1 s; this
        // reading is the next one. Never earlier: the first second passes without a report.
        #expect(seen.first == .milliseconds(1200), "\(seen)")
    }

    @Test func progressLineIsHerokuStyleAndMasked() {
        let progress = DownloadProgress(
            url: "https://u:pw@example.com/bp.tgz?token=abc", bytes: 12_345_678, total: 40_000_000,
            bytesPerSecond: 8_120_000)
        #expect(
            progress.line
                == "       Downloading https://***@example.com/bp.tgz?token=*** 12.3 MB of 40.0 MB (30%), 8.1 MB/s, 4 s left"
        )
        let unknownTotal = DownloadProgress(url: "http://h/x.tgz", bytes: 512, total: nil, bytesPerSecond: 0)
        #expect(unknownTotal.line == "       Downloading http://h/x.tgz 512 B, 0 B/s")
        let slow = DownloadProgress(url: "http://h/x.tgz", bytes: 1000, total: 1_000_000, bytesPerSecond: 1000)
        #expect(slow.line == "       Downloading http://h/x.tgz 1.0 kB of 1.0 MB (0%), 1.0 kB/s, 16 min 39 s left")
        #expect(DownloadProgress.format(bytes: 999) == "999 B")
        #expect(DownloadProgress.format(bytes: 1_500) == "1.5 kB")
        #expect(DownloadProgress.format(bytes: 999_960) == "1.0 MB")
        #expect(DownloadProgress.format(bytes: 2_050_000_000) == "2.1 GB")
    }

    @Test func theDeadlineCoversEveryRetry() throws {
        let server = try LoopbackHTTPServer(routes: ["/stall.tgz": .stall(body: Self.body, after: 1000)])
        defer { server.stop() }
        let request = DownloadRequest(
            url: server.url("/stall.tgz"), timeout: .milliseconds(2500), maxRetries: 3, stallWindow: .seconds(1))
        let clock = ContinuousClock()
        let started = clock.now

        let error = #expect(throws: HTTPError.self) {
            try client.download(request, to: scratch.path("stall.part"), progress: nil)
        }

        // Four attempts of one stalled second each would take 4 s; the deadline ends it at 2.5 s.
        #expect(clock.now - started < .milliseconds(3500))
        #expect(error?.kind == .timeout)
        #expect((error?.attempts ?? 0) < 4)
    }

    @Test func eachRetryIsAnnounced() throws {
        let server = try LoopbackHTTPServer(routes: [
            "/flaky.tgz": .sequence([.status(503), .status(503), .serve(body: Self.body)])
        ])
        defer { server.stop() }
        let notices = Mutex<[String]>([])
        let client = HTTPClient(clock: sleeps)

        _ = try client.download(
            DownloadRequest(url: server.url("/flaky.tgz")), to: scratch.path("flaky.part"), progress: nil,
            notice: { line in notices.withLock { $0.append(line) } })

        #expect(
            notices.withLock { $0 } == [
                "\(server.url("/flaky.tgz")): retrying in 2 s after HTTP 503 (attempt 2 of 4)",
                "\(server.url("/flaky.tgz")): retrying in 4 s after HTTP 503 (attempt 3 of 4)",
            ])
    }

    @Test func aBodyLargerThanTheLimitIsStoppedAndRefused() throws {
        let server = try LoopbackHTTPServer(routes: [
            "/huge.tgz": .serve(body: Self.body),
            "/slow-huge.tgz": .trickle(body: Self.body, chunk: 20_000, pause: .milliseconds(20)),
        ])
        defer { server.stop() }
        for route in ["/huge.tgz", "/slow-huge.tgz"] {
            let path = scratch.path("huge.part")
            let error = #expect(throws: HTTPError.self) {
                try client.download(
                    DownloadRequest(url: server.url(route), maxBytes: 50_000), to: path, progress: nil)
            }
            guard case .tooLarge(let limit, _)? = error?.kind else {
                Issue.record("expected tooLarge, got \(String(describing: error))")
                continue
            }
            #expect(limit == 50_000)
            #expect(error?.isTransient == false)
            #expect(error?.description.contains("MULTIPACK_MAX_DOWNLOAD") == true)
            #expect(server.requestCount(route) == 1)
            #expect(!Scratch.exists(path))
        }
    }

    @Test func anHTMLPageWhereAnArchiveWasExpectedIsNamedWithItsTitle() throws {
        let page = Array(
            "\n<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<TITLE>\n  Sign in to   GitHub · GitHub\n</TITLE></head><body>…</body></html>\n"
                .utf8)
        let server = try LoopbackHTTPServer(routes: ["/bp.tgz": .serve(body: page)])
        defer { server.stop() }
        let path = scratch.path("page.part")

        let error = #expect(throws: HTTPError.self) {
            try client.download(
                DownloadRequest(url: server.url("/bp.tgz"), expectsArchive: true), to: path, progress: nil)
        }

        #expect(error?.kind == .html(status: 200, title: "Sign in to GitHub · GitHub"))
        #expect(
            error?.description.contains("answered with an HTML page (HTTP 200, title \"Sign in to GitHub · GitHub\")")
                == true)
        #expect(!Scratch.exists(path))
        // Where any file will do, the page is just a file.
        #expect(throws: Never.self) {
            try client.download(DownloadRequest(url: server.url("/bp.tgz")), to: path, progress: nil)
        }
    }

    @Test func backoffDoublesUpToTheCap() {
        let client = HTTPClient(backoffBase: .seconds(1), maxBackoff: .seconds(5))
        #expect(
            (1...5).map(client.backoff(beforeRetry:)) == [
                .seconds(1), .seconds(2), .seconds(4), .seconds(5), .seconds(5),
            ])
    }

    @Test func sendKeepsASmallBodyInMemoryAndSendsTheHeadersAsked() throws {
        let server = try LoopbackHTTPServer(routes: [
            "/v2/": .reply(status: 200, headers: [("Docker-Content-Digest", "sha256:abc")], body: Array("{}".utf8))
        ])
        defer { server.stop() }

        let response = try client.send(DownloadRequest(url: server.url("/v2/"), headers: ["Accept: x/y"]))

        #expect(response.status == 200)
        #expect(response.body == Array("{}".utf8))
        #expect(response.header("docker-content-digest") == "sha256:abc")
        #expect(server.requests("/v2/").first?.headers["accept"] == "x/y")
    }

    @Test func answeredStatusesComeBackWithTheirHeadersAndRedirectsAreNotFollowed() throws {
        let server = try LoopbackHTTPServer(routes: [
            "/auth": .reply(
                status: 401, headers: [("WWW-Authenticate", "Bearer realm=a"), ("WWW-Authenticate", "Basic realm=b")],
                body: Array("no".utf8)),
            "/moved": .redirect(to: "/elsewhere", status: 307),
            "/elsewhere": .serve(body: Self.body),
        ])
        defer { server.stop() }
        let path = scratch.path("moved.part")

        let auth = try client.send(DownloadRequest(url: server.url("/auth"), answeredStatuses: [401]))
        let moved = try client.send(
            DownloadRequest(url: server.url("/moved"), followsRedirects: false, answeredStatuses: [307]), bodyTo: path)

        #expect(auth.status == 401)
        #expect(auth.headers(named: "www-authenticate") == ["Bearer realm=a", "Basic realm=b"])
        #expect(auth.body == Array("no".utf8))
        #expect(moved.status == 307)
        #expect(moved.header("location") == "/elsewhere")
        #expect(Scratch.contents(path) == [])
        #expect(server.requestCount("/elsewhere") == 0)
    }

    @Test func headAsksForTheHeadersAlone() throws {
        let server = try LoopbackHTTPServer(routes: [
            "/m": .reply(status: 200, headers: [("Docker-Content-Digest", "sha256:abc")], body: Self.body)
        ])
        defer { server.stop() }

        let response = try client.send(DownloadRequest(url: server.url("/m"), method: .head))

        #expect(response.status == 200 && response.body.isEmpty)
        #expect(response.header("Docker-Content-Digest") == "sha256:abc")
        #expect(server.requests("/m").first?.method == "HEAD")
    }

    @Test func aBodyInMemoryIsCapped() throws {
        let server = try LoopbackHTTPServer(routes: ["/big": .serve(body: Self.body)])
        defer { server.stop() }

        let error = #expect(throws: HTTPError.self) {
            try client.send(DownloadRequest(url: server.url("/big"), maxBytes: 1000))
        }

        #expect(error?.kind == .tooLarge(limit: 1000, announced: Int64(Self.body.count)))
    }

    @Test func missingLibcurlIsExplained() throws {
        let failure = try #require(CurlLibrary.open(soname: "libmultipack-absent.so.9").failure)
        let error = HTTPError(
            kind: .libraryUnavailable, url: "https://u:p@h/bp.tgz", detail: failure.message, attempts: 0)
        #expect(error.description.hasPrefix("libcurl could not be loaded: libmultipack-absent.so.9"))
        #expect(error.description.contains("install libcurl4"))
        #expect(error.description.contains("https://***@h/bp.tgz"))
    }
}

extension Result {
    fileprivate var failure: Failure? {
        if case .failure(let failure) = self { failure } else { nil }
    }
}

/// A private temporary directory per test, removed with its files when the test ends.
private final class Scratch {
    let directory: String

    init() {
        var template = Array("/tmp/multipack-http-XXXXXX".utf8CString)
        directory = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    deinit {
        if let stream = opendir(directory) {
            while let entry = readdir(stream) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) {
                    String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name != "." && name != ".." { unlink(path(name)) }
            }
            closedir(stream)
        }
        rmdir(directory)
    }

    func path(_ name: String) -> String {
        "\(directory)/\(name)"
    }

    static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    static func contents(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { return count == 0 ? data : nil }
            data += buffer[..<count]
        }
    }

    static func write(_ path: String, _ bytes: [UInt8]) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        precondition(fd >= 0)
        defer { close(fd) }
        bytes.withUnsafeBytes { precondition(Glibc.write(fd, $0.baseAddress, $0.count) == $0.count) }
    }

    /// A loopback port nothing listens on: bound once, then released.
    static func unusedPort() throws -> UInt16 {
        let server = try LoopbackHTTPServer(routes: [:])
        server.stop()
        return server.port
    }
}
