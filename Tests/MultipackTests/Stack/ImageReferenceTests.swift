import Foundation
import Testing

@testable import MultipackKit

@Suite struct ImageReferenceTests {
    static let digest = "sha256:" + String(repeating: "ab", count: 32)

    @Test(arguments: [
        ("heroku/heroku:24-build", "registry-1.docker.io", "heroku/heroku", "24-build", "https"),
        ("ubuntu", "registry-1.docker.io", "library/ubuntu", "latest", "https"),
        ("docker.io/ubuntu:24.04", "registry-1.docker.io", "library/ubuntu", "24.04", "https"),
        ("index.docker.io/heroku/heroku", "registry-1.docker.io", "heroku/heroku", "latest", "https"),
        ("ghcr.io/org/team/image:v1", "ghcr.io", "org/team/image", "v1", "https"),
        ("127.0.0.1:5000/test/small:1", "127.0.0.1:5000", "test/small", "1", "http"),
        ("127.8.9.10:5000/test", "127.8.9.10:5000", "test", "latest", "http"),
        ("localhost/a_b/c__d/e---f", "localhost", "a_b/c__d/e---f", "latest", "http"),
        ("[::1]:5000/x/y:2", "[::1]:5000", "x/y", "2", "http"),
        ("128.0.0.1:5000/x", "128.0.0.1:5000", "x", "latest", "https"),
        ("registry.example.com:443/x", "registry.example.com:443", "x", "latest", "https"),
    ])
    func parsesAsDockerDoes(text: String, registry: String, repository: String, tag: String, scheme: String) throws {
        let reference = try ImageReference(parsing: text)
        #expect(reference.registry == registry)
        #expect(reference.repository == repository)
        #expect(reference.tag == tag)
        #expect(reference.digest == nil)
        #expect(reference.scheme == scheme)
        #expect(reference.written == text)
    }

    @Test func aDigestWinsOverTheTag() throws {
        let pinned = try ImageReference(parsing: "heroku/heroku:24@\(Self.digest)")
        #expect(pinned.digest == Self.digest)
        #expect(pinned.manifestReference == Self.digest)
        #expect(pinned.canonical == "registry-1.docker.io/heroku/heroku@\(Self.digest)")
        let bare = try ImageReference(parsing: "heroku/heroku@\(Self.digest)")
        #expect(bare.tag == nil)
    }

    @Test(arguments: [
        "", "UPPER", "a/UPPER", "a//b", "/a", "a/", "-a", "a-", "a..b", "a:", "a:-x", "a:.x",
        "a:" + String(repeating: "t", count: 129), "a@sha256:abc", "a@sha512:" + String(repeating: "0", count: 128),
        "a@" + String(repeating: "0", count: 64), "host:0/a", "host:70000/a", "ho_st.com/a", "a b", "a\u{0}b", "é/a",
        String(repeating: "a", count: 256),
    ])
    func refusesWhatIsNoReference(text: String) {
        let error = expectUsageError { _ = try ImageReference(parsing: text) }
        #expect(error?.headline.contains("is not an image reference") == true)
    }

    @Test func theMirrorTakesDockerHubNamesOnly() throws {
        let mirror = ["MULTIPACK_STACK_REGISTRY": "https://mirror.example.com:8443/hub/"]
        let hub = try ImageReference(parsing: "heroku/heroku:24", environment: mirror)
        #expect(hub.baseURL == "https://mirror.example.com:8443")
        #expect(hub.repository == "hub/heroku/heroku")
        let library = try ImageReference(parsing: "ubuntu", environment: mirror)
        #expect(library.repository == "hub/library/ubuntu")
        let other = try ImageReference(parsing: "ghcr.io/x/y", environment: mirror)
        #expect(other.registry == "ghcr.io")

        let loopback = try ImageReference(
            parsing: "heroku/heroku:24", environment: ["MULTIPACK_STACK_REGISTRY": "localhost:5000"])
        #expect(loopback.baseURL == "http://localhost:5000")
        let plain = try ImageReference(parsing: "x", environment: ["MULTIPACK_STACK_REGISTRY": "http://mirror.lan"])
        #expect(plain.baseURL == "http://mirror.lan")
        let secure = try ImageReference(parsing: "x", environment: ["MULTIPACK_STACK_REGISTRY": "mirror.lan"])
        #expect(secure.baseURL == "https://mirror.lan")

        for bad in ["ftp://mirror", "mirror:99999", "mirror/UPPER", "http://"] {
            expectUsageError { _ = try ImageReference(parsing: "x", environment: ["MULTIPACK_STACK_REGISTRY": bad]) }
        }
    }

    @Test func stacksNameHerokusImages() throws {
        #expect(try ImageReference.forStack("heroku-24", role: .build).written == "heroku/heroku:24-build")
        #expect(try ImageReference.forStack("heroku-22", role: .run).written == "heroku/heroku:22")
        for bad in ["heroku", "heroku-2", "heroku-x4", "cedar-14", "heroku-24-build"] {
            expectUsageError { _ = try ImageReference.forStack(bad, role: .build) }
        }
    }

    @Test func challengesAreReadAsRegistriesWriteThem() {
        let hub = AuthChallenge.parse([
            #"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:heroku/heroku:pull""#
        ])
        #expect(hub?.scheme == "bearer")
        #expect(hub?.realm == "https://auth.docker.io/token")
        #expect(hub?.parameters["scope"] == "repository:heroku/heroku:pull")
        let url = hub.flatMap { RegistryAuth.tokenURL($0, repository: "heroku/heroku") }
        #expect(url == "https://auth.docker.io/token?service=registry.docker.io&scope=repository:heroku/heroku:pull")

        let both = AuthChallenge.parse([
            #"Basic realm="x""#, #"Bearer realm="https://ghcr.io/token", service = ghcr.io"#,
        ])
        #expect(both?.scheme == "bearer")
        #expect(both?.parameters["service"] == "ghcr.io")
        #expect(AuthChallenge.parse(["Negotiate"]) == nil)
        let quoted = AuthChallenge.parseOne(#"Bearer realm="a\"b,c",error="invalid_token""#)
        #expect(quoted?.realm == #"a"b,c"#)
        #expect(AuthChallenge.parseOne("Bearer " + String(repeating: "x=", count: 100_000)) != nil)
    }

    @Test func credentialsComeFromTheDockerConfig() throws {
        let temp = try TempDir("docker-config")
        let auth = Data("user:pa:ss".utf8).base64EncodedString()
        try #"{"auths":{"https://index.docker.io/v1/":{"auth":"\#(auth)"},"ghcr.io":{"username":"u","password":"p"}}}"#
            .write(toFile: temp.path + "/config.json", atomically: true, encoding: .utf8)
        let environment = ["DOCKER_CONFIG": temp.path]

        #expect(
            RegistryCredentials.find(for: "registry-1.docker.io", environment: environment)
                == RegistryCredentials(username: "user", password: "pa:ss"))
        #expect(
            RegistryCredentials.find(for: "ghcr.io", environment: environment)?.basicHeader
                == "Authorization: Basic dTpw")
        #expect(RegistryCredentials.find(for: "quay.io", environment: environment) == nil)
        #expect(RegistryCredentials.find(for: "ghcr.io", environment: ["HOME": temp.path + "/none"]) == nil)
    }

    @Test func redirectsAreResolvedAgainstTheURLThatSentThem() {
        let from = "https://registry.example.com:5000/v2/x/blobs/sha256:ab?x=1"
        #expect(RegistryClient.origin(from) == "https://registry.example.com:5000")
        #expect(
            RegistryClient.resolve("https://cdn.example.com/a?sig=1", against: from)
                == "https://cdn.example.com/a?sig=1")
        #expect(RegistryClient.resolve("/other", against: from) == "https://registry.example.com:5000/other")
        #expect(RegistryClient.resolve("//cdn.example.com/b", against: from) == "https://cdn.example.com/b")
        #expect(RegistryClient.resolve("c", against: from) == "https://registry.example.com:5000/v2/x/blobs/c")
        #expect(RegistryClient.retryAfter("3600") == "1 h 0 min")
        #expect(RegistryClient.retryAfter("Wed, 21 Oct 2026 07:28:00 GMT") == "Wed, 21 Oct 2026 07:28:00 GMT")
    }
}
