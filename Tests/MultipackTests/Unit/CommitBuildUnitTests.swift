import Testing

@testable import MultipackKit

/// What `build` and `run` read from their arguments for SPEC §19: a repository at a ref, a name
/// for its slugs, a mount.
@Suite struct CommitBuildUnitTests {
    @Test(
        arguments: [
            ("https://github.com/acme/shop.git#v1.2", "https://github.com/acme/shop.git", "v1.2", "shop"),
            ("https://u:tok@git.example.com/acme/shop", "https://u:tok@git.example.com/acme/shop", nil, "shop"),
            ("git@github.com:acme/shop.git#main", "git@github.com:acme/shop.git", "main", "shop"),
            (
                "ssh://git@host:2222/srv/repos/web-app.git/#abc1234", "ssh://git@host:2222/srv/repos/web-app.git/",
                "abc1234", "web-app"
            ),
            ("file:///srv/git/My%20App.git#feature/x", "file:///srv/git/My%20App.git", "feature/x", "My-20App"),
            ("/srv/git/shop.git#v1", "/srv/git/shop.git", "v1", "shop"),
        ] as [(String, String, String?, String)])
    func repositories(_ text: String, _ url: String, _ ref: String?, _ name: String) throws {
        let repository = try #require(AppRepository.parse(text))
        #expect(repository.url == url)
        #expect(repository.ref == ref)
        #expect(repository.name == name)
    }

    @Test(arguments: ["./app", "/srv/app", "app", "acme/shop", "https://example.com/app.tgz", "https://host/x#"])
    func notRepositories(_ text: String) {
        #expect(AppRepository.parse(text) == nil)
    }

    @Test func theStateAndMirrorAreKeyedByTheMaskedURL() {
        let environment = ["XDG_CACHE_HOME": "/c"]
        let one = AppRepository(url: "https://a:one@host/shop.git", ref: "main")
        let two = AppRepository(url: "https://a:two@host/shop.git", ref: "v1")
        #expect(one.stateDirectory(environment: environment) == two.stateDirectory(environment: environment))
        #expect(one.stateDirectory(environment: environment).hasPrefix("/c/multipack/apps/shop-"))
        #expect(one.mirrorDirectory(environment: environment).hasPrefix("/c/multipack/repos/shop-"))
        #expect(!one.stateDirectory(environment: environment).contains("one"))
    }

    @Test func safeNamesAreOnePathComponent() {
        #expect(AppRepository.safeName("..") == "app")
        #expect(AppRepository.safeName("") == "app")
        #expect(AppRepository.safeName("a/b\nc") == "a-b-c")
        #expect(AppRepository.safeName(String(repeating: "x", count: 500)).count == 100)
    }

    @Test func aURLWithAControlCharacterIsBadInput() {
        #expect(throws: MultipackError.self) { try AppRepository(url: "https://host/x\n.git", ref: nil).check() }
        #expect(throws: MultipackError.self) { try AppRepository(url: "https://host/x.git", ref: "a\tb").check() }
        #expect(throws: MultipackError.self) {
            try AppRepository(url: "https://host/x.git", ref: String(repeating: "r", count: 2000)).check()
        }
    }

    @Test func mountsAreReadFromTheRight() throws {
        let mount = try Mount.parse("/tmp:/var/cache/src/./:ro")
        #expect(mount.host == "/tmp")
        #expect(mount.path == "/var/cache/src")
        #expect(mount.readOnly)
        let writable = try Mount.parse("/tmp//:/output:rw")
        #expect(writable.path == "/output" && !writable.readOnly)
        #expect(throws: MultipackError.self) { try Mount.parse("/tmp:/app:ro") }
        #expect(throws: MultipackError.self) { try Mount.parse(":/output") }
        #expect(throws: MultipackError.self) { try Mount.parse("/tmp:/out\nput") }
        #expect(throws: MultipackError.self) {
            try Mount.checkDistinct([try Mount.parse("/tmp:/a"), try Mount.parse("/var:/a:ro")])
        }
    }

    @Test func slugRecordsSayWhatChanged() throws {
        let before = SlugRecord.Inputs(
            stack: .init(name: "heroku-24", root: "this machine's /", digest: nil),
            buildpacks: [.init(url: "https://host/bp.git", version: "aaaa")],
            configVars: try SlugRecord.ConfigVars([("A", "1")]))
        var after = before
        #expect(after.differences(from: before).isEmpty)
        after.configVars = try SlugRecord.ConfigVars([("A", "2")])
        after.buildpacks[0].version = "bbbb"
        #expect(after.differences(from: before) == ["the config vars' values", "https://host/bp.git: aaaa → bbbb"])
        // The record holds names and one digest, never a value.
        #expect(try !SlugRecord.ConfigVars([("TOKEN", "hunter2")]).sha256.contains("hunter2"))
    }
}
