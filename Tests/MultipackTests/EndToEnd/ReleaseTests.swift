import Foundation
import Testing

/// SPEC §16: a release cut by scripts/release.sh, then used as Heroku uses a repository URL at a
/// tag: a clone with no binary and no Swift on PATH, the binary downloaded from a loopback
/// "release" server and checked against the digest release.sh wrote into the tagged commit.
enum Released {
    /// A copy of the checkout at a fixed, git-ignored path, so that its release build (in
    /// `scratch`) is incremental from one test run to the next.
    static let base = Repo.root + "/.build-package/release-test"
    static var checkout: String { base + "/checkout" }
    static let version = "9.8.7"
    static let arch = ShimDownloadTests.arch

    static let environment: [String: String] = {
        var env = Shell.gitEnvironment
        env["MULTIPACK"] = Repo.binary
        env["MULTIPACK_PACKAGE_SCRATCH"] = base + "/scratch"
        env["BUILDPACK_XTRACE"] = nil
        env["MULTIPACK_BUILDPACK_DIR"] = nil
        return env
    }()

    /// The checkout's tracked files as they are now, committed in the copy: what a maintainer
    /// would release. Unchanged files keep their inode and mtime, so SwiftPM rebuilds only what changed.
    static func prepareCheckout() throws {
        try FileManager.default.createDirectory(atPath: checkout, withIntermediateDirectories: true)
        let listing = try Shell.run("git", ["-C", Repo.root, "ls-files", "-z", "--cached"]).stdout
        let files = listing.split(separator: "\0").map(String.init).filter {
            FileManager.default.fileExists(atPath: Repo.root + "/" + $0)
        }
        try files.joined(separator: "\0").write(toFile: base + "/files", atomically: true, encoding: .utf8)
        let sync = try Shell.run(
            "rsync", ["-a", "--from0", "--files-from=\(base)/files", Repo.root + "/", checkout + "/"])
        guard sync.status == 0 else { throw TestFailure("rsync failed: \(sync.all)") }
        if !FileManager.default.fileExists(atPath: checkout + "/.git") {
            try Shell.git(["init", "--quiet", "--initial-branch=main"], in: checkout)
        }
        // A file the checkout no longer has goes from the copy too (a deleted source would still build there).
        let kept = Set(files)
        let copied = try Shell.run("git", ["-C", checkout, "ls-files", "-z", "--cached"]).stdout
        for file in copied.split(separator: "\0").map(String.init) where !kept.contains(file) {
            try? FileManager.default.removeItem(atPath: checkout + "/" + file)
        }
        // The previous run's assets are not part of the next release.
        try? FileManager.default.removeItem(atPath: checkout + "/dist")
        for tag in try Shell.gitOutput(["tag", "-l"], in: checkout).split(separator: "\n") {
            try Shell.git(["tag", "-d", String(tag)], in: checkout)
        }
        try Shell.git(["add", "-A"], in: checkout)
        try Shell.git(["commit", "--quiet", "--allow-empty", "-m", "snapshot for the release test"], in: checkout)
    }

    /// release.sh's output, once per test run.
    static let result: Result<Output, TestFailure> = {
        do {
            try prepareCheckout()
            let output = try Shell.run(
                checkout + "/scripts/release.sh", [version], in: checkout, environment: environment)
            guard output.status == 0 else { return .failure(TestFailure("release.sh failed:\n\(output.all)")) }
            return .success(output)
        } catch {
            return .failure(error as? TestFailure ?? TestFailure("\(error)"))
        }
    }()

    static var binary: String { checkout + "/dist/multipack-\(arch)" }
}

@Suite(.enabled(if: Packaged.enabled), .serialized) struct ReleaseScriptTests {
    @Test func releaseWritesTheDigestIntoTheTaggedCommitAndLeavesTheAssets() throws {
        let output = try Released.result.get()
        let checkout = Released.checkout
        let digest = String(try Shell.run("sha256sum", [Released.binary]).stdout.prefix(64))
        #expect(output.stdout.contains("sha256_\(Released.arch) = \"\(digest)\""), "\(output.all)")
        #expect(output.stdout.components(separatedBy: "+ swift build").count <= 3, "each command shown once")

        let tagged = try Shell.gitOutput(["rev-parse", "v\(Released.version)^{commit}"], in: checkout)
        #expect(tagged == (try Shell.gitOutput(["rev-parse", "HEAD"], in: checkout)))
        let toml = try Shell.gitOutput(["show", "v\(Released.version):buildpack.toml"], in: checkout)
        #expect(toml.contains("version = \"\(Released.version)\""))
        #expect(toml.contains("sha256_\(Released.arch) = \"\(digest)\""), "\(toml)")
        #expect(try Shell.gitOutput(["status", "--porcelain", "--untracked-files=no"], in: checkout).isEmpty)

        let sums = try String(contentsOfFile: checkout + "/dist/SHA256SUMS", encoding: .utf8)
        #expect(sums.contains("\(digest)  multipack-\(Released.arch)"))
        #expect(FileManager.default.fileExists(atPath: checkout + "/dist/multipack.tgz"))
        // The binary says which release and which commit it was built from: the one before the digest.
        let source = try Shell.gitOutput(["rev-parse", "HEAD~1"], in: checkout)
        let version = try Shell.run(Released.binary, ["--version"])
        #expect(version.stdout.contains("multipack \(Released.version)"), "\(version.all)")
        #expect(version.stdout.contains(String(source.prefix(12))), "\(version.all)")
    }

    /// What Heroku does with `heroku buildpacks:set https://…/multipack#v9.8.7`: a clone at the tag.
    func herokuClone(in temp: TempDir) throws -> String {
        let dir = temp.path + "/buildpack"
        try Shell.git(["clone", "--quiet", "--branch", "v\(Released.version)", Released.checkout, dir], in: temp.path)
        #expect(!FileManager.default.fileExists(atPath: dir + "/vendor"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/.build"))
        return dir
    }

    func heroku(_ buildpack: String, _ verb: String, _ arguments: [String], server: LoopbackHTTPServer, tmp: String)
        throws -> Output
    {
        var env = Multipack.environment([:])
        env["PATH"] = herokuLikePath
        env["TMPDIR"] = tmp
        env["MULTIPACK_BINARY_URL"] = server.url("/releases/download/v{version}/multipack-{arch}")
        return try Shell.run(buildpack + "/bin/" + verb, arguments, environment: env)
    }

    @Test func aTaggedCheckoutDownloadsTheReleaseBinaryAndBuildsWithoutSwift() throws {
        _ = try Released.result.get()
        #expect(try Shell.run("/bin/sh", ["-c", "PATH=\(herokuLikePath) command -v swift"]).status != 0)
        let temp = try TempDir("release-heroku")
        let asset = "/releases/download/v\(Released.version)/multipack-\(Released.arch)"
        let bytes = Array(try #require(FileManager.default.contents(atPath: Released.binary)))
        let server = try LoopbackHTTPServer(routes: [asset: .serve(body: bytes)])
        defer { server.stop() }
        let buildpack = try herokuClone(in: temp)
        let node = try gitChild("node", in: temp)
        let python = try gitChild("python", in: temp)
        let app = try App("python-node", in: temp, buildpacks: "file://\(node)\n\(python)\n")
        let tmp = temp.sub("tmp")

        let detect = try heroku(buildpack, "detect", [app.build], server: server, tmp: tmp)
        #expect(detect.status == 0 && detect.stdout == "Multipack\n", "\(detect.all)")
        #expect(detect.stderr.contains("Downloading multipack \(Released.version) for \(Released.arch)"))
        let compile = try heroku(buildpack, "compile", [app.build, app.cache, app.env], server: server, tmp: tmp)
        #expect(compile.status == 0, "\(compile.all)")
        #expect(compile.stdout.contains("python installed"), "\(compile.stdout)")
        let release = try heroku(buildpack, "release", [app.build], server: server, tmp: tmp)
        #expect(release.status == 0)
        #expect(release.stdout.contains("\"web\": \"gunicorn app:app\""), "\(release.all)")
        // Downloaded once, kept for the later calls.
        #expect(server.requestCount(asset) == 1)
        #expect(FileManager.default.fileExists(atPath: buildpack + "/vendor/multipack-\(Released.arch)"))
    }

    @Test func aWrongDigestRunsNothingAndKeepsNothing() throws {
        _ = try Released.result.get()
        let temp = try TempDir("release-wrong")
        let asset = "/releases/download/v\(Released.version)/multipack-\(Released.arch)"
        // Another build of multipack: a working binary, just not the released one.
        let other = Array(try #require(FileManager.default.contents(atPath: Repo.binary)))
        let server = try LoopbackHTTPServer(routes: [asset: .serve(body: other)])
        defer { server.stop() }
        let buildpack = try herokuClone(in: temp)
        let node = try gitChild("node", in: temp)
        let app = try App("python-node", in: temp, buildpacks: "file://\(node)\n")
        let tmp = temp.sub("tmp")
        let before = try Shell.gitOutput(["status", "--porcelain", "--ignored"], in: buildpack)

        for (verb, arguments) in [("detect", [app.build]), ("compile", [app.build, app.cache, app.env])] {
            let result = try heroku(buildpack, verb, arguments, server: server, tmp: tmp)
            #expect(result.status == 1, "\(result.all)")
            #expect(result.stderr.contains("is not the one buildpack.toml lists"), "\(result.all)")
            #expect(!result.stdout.contains("Multipack") && !result.stdout.contains("Installing node"))
        }
        #expect(server.requestCount(asset) == 2)
        // Nothing kept: no binary, no record, nothing in the app, the cache or TMPDIR.
        #expect(try Shell.gitOutput(["status", "--porcelain", "--ignored"], in: buildpack) == before)
        #expect(!FileManager.default.fileExists(atPath: buildpack + "/vendor/multipack-\(Released.arch)"))
        #expect(!app.exists(".heroku"))
        #expect((try FileManager.default.contentsOfDirectory(atPath: app.cache)).isEmpty)
        #expect((try FileManager.default.contentsOfDirectory(atPath: tmp)).isEmpty)
    }
}

/// release.sh's refusals, and the shim's two variables; none of these builds anything.
@Suite struct ReleaseInputTests {
    @Test func releaseRefusesABadVersionAndADirtyCheckout() throws {
        let temp = try TempDir("release-input")
        let repo = temp.sub("repo")
        try FileManager.default.createDirectory(atPath: repo + "/scripts", withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            atPath: Repo.root + "/scripts/release.sh", toPath: repo + "/scripts/release.sh")
        try FileManager.default.copyItem(atPath: Repo.root + "/buildpack.toml", toPath: repo + "/buildpack.toml")
        try Shell.git(["init", "--quiet", "--initial-branch=main"], in: repo)
        try Shell.git(["add", "-A"], in: repo)
        try Shell.git(["commit", "--quiet", "-m", "x"], in: repo)
        let env = Shell.gitEnvironment.merging(["MULTIPACK": "/bin/false"]) { $1 }

        let bad = try Shell.run(repo + "/scripts/release.sh", ["next"], in: repo, environment: env)
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("next is not a version"))
        #expect(try Shell.run(repo + "/scripts/release.sh", [], in: repo, environment: env).status == 2)

        try "# edited\n".write(toFile: repo + "/buildpack.toml", atomically: true, encoding: .utf8)
        let dirty = try Shell.run(repo + "/scripts/release.sh", ["1.0.0"], in: repo, environment: env)
        #expect(dirty.status == 1)
        #expect(dirty.stderr.contains("uncommitted changes"))
        #expect(try Shell.gitOutput(["tag", "-l"], in: repo).isEmpty)
    }

    @Test func theShimTakesTheDigestFromTheEnvironmentWhenTheCheckoutHasNone() throws {
        let shims = ShimDownloadTests()
        let temp = try TempDir("digest-env")
        let server = try LoopbackHTTPServer(routes: [
            "/multipack-\(ShimDownloadTests.arch)": .serve(body: ShimDownloadTests.binary)
        ])
        defer { server.stop() }
        let dir = try shims.checkout(in: temp, url: "https://example.invalid/unused", sha256: nil)
        let app = try App(nil, in: temp, buildpacks: "heroku/python\n")

        let refused = try shims.run(dir, "detect", [app.build])
        #expect(refused.status == 1)
        for phrase in [
            "this checkout is not a release", "releases/download/v<version>/multipack.tgz",
            "MULTIPACK_BINARY_URL", "MULTIPACK_BINARY_SHA256",
        ] {
            #expect(refused.stderr.contains(phrase), "\(phrase): \(refused.stderr)")
        }
        let url = server.url("/multipack-{arch}")
        let both = try shims.run(
            dir, "detect", [app.build],
            extra: [
                "MULTIPACK_BINARY_URL": url, "MULTIPACK_BINARY_SHA256": ShimDownloadTests.binarySHA256.uppercased(),
            ])
        #expect(both.status == 0 && both.stdout == "Multipack\n", "\(both.all)")

        let otherTemp = try TempDir("digest-env-bad")
        let other = try shims.checkout(in: otherTemp, url: url, sha256: nil)
        let wrong = try shims.run(
            other, "detect", [app.build], extra: ["MULTIPACK_BINARY_SHA256": String(repeating: "1", count: 64)])
        #expect(wrong.status == 1)
        #expect(wrong.stderr.contains("is not the one buildpack.toml lists"))
        #expect(shims.vendorFiles(other).isEmpty)
        let notHex = try shims.run(other, "detect", [app.build], extra: ["MULTIPACK_BINARY_SHA256": "abc"])
        #expect(notHex.status == 1)
        #expect(notHex.stderr.contains("is not 64 hex digits"))
    }
}
