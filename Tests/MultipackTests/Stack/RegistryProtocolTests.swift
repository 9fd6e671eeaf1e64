import Foundation
import Synchronization
import Testing

@testable import MultipackKit

/// The registry protocol's harder parts against a loopback front the test scripts: Docker Hub's
/// 401 + Bearer token flow, blobs redirected to a "CDN" on another port that must never see the
/// token, tokens and signed URLs that expire mid-pull, rate limits, HTML pages, loops and stalls.
@Suite struct RegistryProtocolTests {
    let temp: TempDir
    let layout: OCILayout
    let manifest: (digest: String, bytes: [UInt8])
    /// The config and the layers: every blob the image has.
    let blobs: [String: [UInt8]]

    init() throws {
        temp = try TempDir("protocol")
        layout = try OCILayout(in: temp)
        try layout.create("1") { try OCILayout.busyboxRoot($0, id: "front") }
        let digest = try layout.manifest("1").digest
        manifest = (digest, try layout.blob(digest))
        let document = try JSONSerialization.jsonObject(with: Data(manifest.bytes)) as! [String: Any]
        let config = (document["config"] as! [String: Any])["digest"] as! String
        let layers = (document["layers"] as! [[String: Any]]).map { $0["digest"] as! String }
        var blobs: [String: [UInt8]] = [:]
        for blob in [config] + layers { blobs[blob] = try layout.blob(blob) }
        self.blobs = blobs
    }

    /// What the front decides per request; its counters.
    final class Script: Sendable {
        let port = Mutex<UInt16>(0)
        let cdnPort = Mutex<UInt16>(0)
        /// The token the front accepts now; `/token` hands out `tok<generation>`.
        let generation = Mutex(1)
        let tokens = Mutex(0)
        let signatures = Mutex(0)
        var realm: String { "http://127.0.0.1:\(port.withLock { $0 })/token" }
    }

    static func challenge(_ script: Script) -> LoopbackHTTPServer.Behaviour {
        .reply(
            status: 401,
            headers: [
                (
                    "WWW-Authenticate",
                    #"Bearer realm="\#(script.realm)",service="front",scope="repository:test/small:pull""#
                )
            ], body: Array(#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.utf8))
    }

    /// A registry front for test/small:1 that wants a token and sends blobs to the CDN.
    func front(
        _ script: Script, manifestBehaviour: LoopbackHTTPServer.Behaviour? = nil,
        expireAfterManifest: Bool = false, blob: ((String) -> LoopbackHTTPServer.Behaviour)? = nil
    ) throws -> LoopbackHTTPServer {
        let manifest = self.manifest
        let authorized: @Sendable (LoopbackHTTPServer.Request) -> Bool = { request in
            request.headers["authorization"] == "Bearer tok\(script.generation.withLock { $0 })"
        }
        var routes: [String: LoopbackHTTPServer.Behaviour] = [
            "/token": .handler { _ in
                let token = script.generation.withLock { $0 }
                script.tokens.withLock { $0 += 1 }
                return .reply(status: 200, body: Array(#"{"token":"tok\#(token)","expires_in":300}"#.utf8))
            },
            "/v2/test/small/manifests/1": manifestBehaviour
                ?? .handler { request in
                    guard authorized(request) else { return Self.challenge(script) }
                    if expireAfterManifest && request.method == "GET" { script.generation.withLock { $0 += 1 } }
                    return .reply(
                        status: 200,
                        headers: [
                            ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
                            ("Docker-Content-Digest", manifest.digest),
                        ], body: manifest.bytes)
                },
        ]
        for digest in blobs.keys {
            routes["/v2/test/small/blobs/\(digest)"] =
                blob?(digest)
                ?? .handler { request in
                    guard authorized(request) else { return Self.challenge(script) }
                    let signature = script.signatures.withLock {
                        $0 += 1; return $0
                    }
                    let cdn = script.cdnPort.withLock { $0 }
                    return .reply(
                        status: 307,
                        headers: [("Location", "http://127.0.0.1:\(cdn)/cdn/\(digest.dropFirst(7))?sig=\(signature)")])
                }
        }
        let server = try LoopbackHTTPServer(routes: routes)
        script.port.withLock { $0 = server.port }
        return server
    }

    /// The CDN: serves every blob; `expired` signatures get 403 as a lapsed signed URL does.
    func cdn(_ script: Script, expired: Set<Int> = []) throws -> LoopbackHTTPServer {
        var routes: [String: LoopbackHTTPServer.Behaviour] = [:]
        for (digest, bytes) in blobs {
            routes["/cdn/\(digest.dropFirst(7))"] = .handler { request in
                let signature = request.target.split(separator: "sig=").last.flatMap { Int($0) } ?? 0
                return expired.contains(signature) ? .reply(status: 403) : .serve(body: bytes)
            }
        }
        let server = try LoopbackHTTPServer(routes: routes)
        script.cdnPort.withLock { $0 = server.port }
        return server
    }

    final class Lines: Sendable {
        let text = Mutex("")
        var log: Log { Log(write: { [self] line, _ in text.withLock { $0 += line } }) }
    }

    func puller(_ lines: Lines, environment extra: [String: String] = [:]) throws -> StackPuller {
        let environment = ["HOME": temp.sub("home"), "XDG_CACHE_HOME": temp.path + "/cache"].merging(extra) { $1 }
        var puller = try StackPuller(
            environment: environment, log: lines.log, http: HTTPClient(backoffBase: .milliseconds(10)))
        puller.terminal = false
        return puller
    }

    func reference(_ server: LoopbackHTTPServer) throws -> ImageReference {
        try ImageReference(parsing: "127.0.0.1:\(server.port)/test/small:1")
    }

    @Test func theTokenFlowWorksAndTheCDNNeverSeesTheToken() throws {
        let script = Script()
        let cdn = try cdn(script)
        defer { cdn.stop() }
        let front = try front(script)
        defer { front.stop() }
        let lines = Lines()
        let puller = try puller(lines)

        let image = try puller.image(reference(front))

        #expect(image.digest == manifest.digest)
        #expect(FileManager.default.fileExists(atPath: image.root + "/bin/busybox"))
        #expect(script.tokens.withLock { $0 } == 1)
        let cdnRequests = blobs.keys.flatMap { cdn.requests("/cdn/\($0.dropFirst(7))") }
        #expect(cdnRequests.count == blobs.count)
        #expect(cdnRequests.allSatisfy { $0.headers["authorization"] == nil })
        #expect(front.requests("/token").allSatisfy { $0.headers["authorization"] == nil })

        // Warm: the token first (the challenge is remembered), then the manifest once.
        let before = front.requestCount("/v2/test/small/manifests/1")
        let warm = try puller.image(reference(front))
        #expect(!warm.pulled)
        #expect(front.requestCount("/v2/test/small/manifests/1") == before + 1)
        #expect(front.requests("/v2/test/small/manifests/1").last?.method == "HEAD")
        #expect(script.tokens.withLock { $0 } == 2)
        #expect(cdnRequests.count == blobs.keys.flatMap { cdn.requests("/cdn/\($0.dropFirst(7))") }.count)
    }

    @Test func credentialsOfTheDockerConfigGoToTheTokenServiceOnly() throws {
        let script = Script()
        let cdn = try cdn(script)
        defer { cdn.stop() }
        let front = try front(script)
        defer { front.stop() }
        let config = temp.sub("docker")
        let auth = Data("robot:s3cret".utf8).base64EncodedString()
        try #"{"auths":{"http://127.0.0.1:\#(front.port)":{"auth":"\#(auth)"}}}"#.write(
            toFile: config + "/config.json", atomically: true, encoding: .utf8)
        let lines = Lines()

        _ = try puller(lines, environment: ["DOCKER_CONFIG": config]).image(reference(front))

        #expect(front.requests("/token").first?.headers["authorization"] == "Basic \(auth)")
        let cdnRequests = blobs.keys.flatMap { cdn.requests("/cdn/\($0.dropFirst(7))") }
        #expect(!cdnRequests.isEmpty && cdnRequests.allSatisfy { $0.headers["authorization"] == nil })
        #expect(!lines.text.withLock { $0 }.contains("s3cret"))
    }

    @Test func aTokenThatExpiresMidPullIsRenewed() throws {
        let script = Script()
        let cdn = try cdn(script)
        defer { cdn.stop() }
        let front = try front(script, expireAfterManifest: true)
        defer { front.stop() }

        let image = try puller(Lines()).image(reference(front))

        #expect(image.pulled)
        #expect(script.tokens.withLock { $0 } == 2)
    }

    @Test func anExpiredRedirectIsAskedForAgain() throws {
        let script = Script()
        let cdn = try cdn(script, expired: [1])
        defer { cdn.stop() }
        let front = try front(script)
        defer { front.stop() }
        let lines = Lines()

        let image = try puller(lines).image(reference(front))

        #expect(image.pulled)
        #expect(script.signatures.withLock { $0 } == blobs.count + 1)
        #expect(lines.text.withLock { $0 }.contains("answered HTTP 403: asking the registry again"))
        #expect(!lines.text.withLock { $0 }.contains("sig=1"), "signed URLs are masked")
    }

    func failure(_ front: LoopbackHTTPServer, _ puller: StackPuller) throws -> StackError? {
        #expect(throws: StackError.self) { try puller.image(reference(front)) }
    }

    @Test func aRateLimitIsReportedWithItsRetryTime() throws {
        let script = Script()
        let front = try front(script, manifestBehaviour: .reply(status: 429, headers: [("Retry-After", "120")]))
        defer { front.stop() }

        let error = try failure(front, puller(Lines()))

        #expect(error?.description.contains("HTTP 429") == true)
        #expect(error?.description.contains("it says to retry after 2 min 0 s.") == true)
        #expect(error?.hint?.contains("100 pulls per 6 hours") == true)
        #expect(front.requestCount("/v2/test/small/manifests/1") == 1, "a 429 is not retried at once")
    }

    @Test func anHTMLPageIsSaidToBeOne() throws {
        let page = Array("<!DOCTYPE html><html><head><title>Sign in to the Wi-Fi</title></head></html>".utf8)
        let front = try front(
            Script(), manifestBehaviour: .reply(status: 200, headers: [("Content-Type", "text/html")], body: page))
        defer { front.stop() }

        let error = try failure(front, puller(Lines()))

        #expect(
            error?.description.contains("The registry answered with an HTML page") == true,
            "\(String(describing: error))")
        #expect(error?.description.contains("Sign in to the Wi-Fi") == true)
    }

    @Test func aRedirectLoopIsRefused() throws {
        let script = Script()
        let loop = try LoopbackHTTPServer(routes: [
            "/loop": .handler { _ in
                .reply(
                    status: 307, headers: [("Location", "http://127.0.0.1:\(script.cdnPort.withLock { $0 })/elsewhere")]
                )
            },
            "/elsewhere": .handler { _ in
                .reply(status: 307, headers: [("Location", "http://127.0.0.1:\(script.cdnPort.withLock { $0 })/loop")])
            },
        ])
        defer { loop.stop() }
        script.cdnPort.withLock { $0 = loop.port }
        let front = try front(script) { _ in .reply(status: 307, headers: [("Location", loop.url("/loop"))]) }
        defer { front.stop() }

        let error = try failure(front, puller(Lines()))

        #expect(error?.description.contains("The registry redirects in a loop") == true, "\(String(describing: error))")
    }

    @Test func aStalledBlobIsGivenUpOnWithinTheDeadlines() throws {
        let script = Script()
        let front = try front(script) { digest in
            .stall(body: blobs[digest]!, after: 10)
        }
        defer { front.stop() }
        var puller = try puller(Lines())
        puller.limits.stallWindow = .seconds(1)
        puller.limits.maxRetries = 1
        let started = ContinuousClock.now

        let error = try failure(front, puller)

        #expect(
            error?.description.contains("The registry stalled or was too slow") == true, "\(String(describing: error))")
        #expect(error?.description.contains("no data arrived for 1 second") == true)
        #expect(ContinuousClock.now - started < .seconds(60))
        let stacks = temp.path + "/cache/multipack/stacks"
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: stacks + "/blobs/sha256")) ?? []).isEmpty)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: stacks + "/roots/sha256")) ?? []).isEmpty)
    }

    /// A registry that sends the big layer slowly the first time it is asked.
    func slowFront() throws -> LoopbackHTTPServer {
        let manifest = self.manifest
        var routes: [String: LoopbackHTTPServer.Behaviour] = [
            "/v2/test/small/manifests/1": .reply(
                status: 200, headers: [("Docker-Content-Digest", manifest.digest)], body: manifest.bytes)
        ]
        for (digest, bytes) in blobs {
            routes["/v2/test/small/blobs/\(digest)"] =
                bytes.count > 100_000
                ? .sequence([.trickle(body: bytes, chunk: 16_384, pause: .milliseconds(100)), .serve(body: bytes)])
                : .serve(body: bytes)
        }
        return try LoopbackHTTPServer(routes: routes)
    }

    @Test func aPullStoppedBySIGTERMExitsAtOnceAndLeavesNothing() throws {
        let front = try slowFront()
        defer { front.stop() }
        let stacks = temp.path + "/cache/multipack/stacks"
        let environment = Multipack.environment([
            "HOME": temp.sub("home"), "XDG_CACHE_HOME": temp.path + "/cache", "TMPDIR": temp.sub("tmp"),
        ])
        let log = temp.path + "/pull.log"
        let process = try Repo.start(
            ["stack", "pull", "127.0.0.1:\(front.port)/test/small:1"], environment: environment, log: log)
        var partial = false
        for _ in 0..<200 where !partial {
            usleep(50_000)
            partial = ((try? FileManager.default.contentsOfDirectory(atPath: stacks + "/blobs/sha256")) ?? [])
                .contains { $0.contains(".partial-") }
        }
        let stopped = ContinuousClock.now
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()

        #expect(partial, "the download had started")
        #expect(ContinuousClock.now - stopped < .seconds(5))
        #expect(process.terminationStatus != 0)
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(output.contains("The pull was stopped by SIGTERM."), "\(output)")
        let left = (FileManager.default.enumerator(atPath: stacks)?.allObjects as? [String]) ?? []
        #expect(!left.contains { $0.contains(".partial-") || $0.hasPrefix("images/") }, "\(left)")
    }

    @Test func aPullKilledMidDownloadLeavesNothingALaterPullTrusts() throws {
        let front = try slowFront()
        defer { front.stop() }
        let environment = Multipack.environment([
            "HOME": temp.sub("home"), "XDG_CACHE_HOME": temp.path + "/cache", "TMPDIR": temp.sub("tmp"),
        ])
        let stacks = temp.path + "/cache/multipack/stacks"
        let name = "127.0.0.1:\(front.port)/test/small:1"
        func everything() -> [String] {
            (FileManager.default.enumerator(atPath: stacks)?.allObjects as? [String]) ?? []
        }

        let process = try Repo.start(["stack", "pull", name], environment: environment, log: temp.path + "/pull.log")
        var partial = false
        for _ in 0..<200 where !partial {
            usleep(50_000)
            partial = ((try? FileManager.default.contentsOfDirectory(atPath: stacks + "/blobs/sha256")) ?? [])
                .contains { $0.contains(".partial-") }
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()

        #expect(partial, "the download had started")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: stacks + "/images")) ?? []).isEmpty)
        let roots = (try? FileManager.default.contentsOfDirectory(atPath: stacks + "/roots/sha256")) ?? []
        #expect(roots.allSatisfy { $0.contains(".partial-") })
        #expect(try puller(Lines()).cached(reference(front)) == nil)

        let again = try Shell.run(Repo.binary, ["stack", "pull", name], environment: environment)

        #expect(again.status == 0, "\(again.all)")
        #expect(!everything().contains { $0.contains(".partial-") }, "\(everything())")
        #expect(try puller(Lines()).cached(reference(front))?.digest == manifest.digest)
    }
}
