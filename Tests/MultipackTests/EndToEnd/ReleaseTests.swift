import Foundation
import Testing

/// SPEC §16: a release cut by scripts/release.sh in a clone, then deployed as Heroku deploys a
/// repository URL: the default branch's tree (no vendor/, no .build), no Swift on PATH, no network
/// but a loopback server holding dist/. The one release build of a test run: PackageTests and the
/// README check use its archive too.
enum Released {
    /// A copy of the checkout at a fixed, git-ignored path, so that its release build (in
    /// `scratch`) is incremental from one test run to the next.
    static let base = Repo.root + "/.build-package/release-test"
    static var checkout: String { base + "/checkout" }
    static let version = "9.8.7"
    static let arch = ShimTests.arch

    static let environment: [String: String] = {
        var env = Shell.gitEnvironment
        env["MULTIPACK"] = Repo.binary
        env["MULTIPACK_PACKAGE_SCRATCH"] = base + "/scratch"
        env["BUILDPACK_XTRACE"] = nil
        env["MULTIPACK_BUILDPACK_DIR"] = nil
        return env
    }()

    /// The checkout's tracked files as they are now, committed on `main` in the copy: what a
    /// maintainer would release. Unchanged files keep their inode and mtime, so SwiftPM rebuilds
    /// only what changed.
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
        // A run that was stopped may have left HEAD detached (packagingTwiceGivesByteIdenticalArchives).
        if try Shell.run("git", ["-C", checkout, "rev-parse", "-q", "--verify", "refs/heads/main"]).status == 0 {
            try Shell.git(["checkout", "--quiet", "main"], in: checkout)
        }
        // A file the checkout no longer has goes from the copy too (a deleted source would still build there).
        let kept = Set(files)
        let copied = try Shell.run("git", ["-C", checkout, "ls-files", "-z", "--cached"]).stdout
        for file in copied.split(separator: "\0").map(String.init) where !kept.contains(file) {
            try? FileManager.default.removeItem(atPath: checkout + "/" + file)
        }
        for tag in try Shell.gitOutput(["tag", "-l"], in: checkout).split(separator: "\n") {
            try Shell.git(["tag", "-d", String(tag)], in: checkout)
        }
        try Shell.git(["add", "-A"], in: checkout)
        try Shell.git(["commit", "--quiet", "--allow-empty", "-m", "snapshot for the release test"], in: checkout)
    }

    /// release.sh's output and the commit it built from, once per test run.
    static let result: Result<(output: Output, source: String), TestFailure> = {
        do {
            try prepareCheckout()
            let source = try Shell.gitOutput(["rev-parse", "HEAD"], in: checkout)
            let output = try Shell.run(
                checkout + "/scripts/release.sh", [version], in: checkout, environment: environment)
            guard output.status == 0 else { return .failure(TestFailure("release.sh failed:\n\(output.all)")) }
            return .success((output, source))
        } catch {
            return .failure(error as? TestFailure ?? TestFailure("\(error)"))
        }
    }()

    static var dist: String { checkout + "/dist" }
    static var binary: String { dist + "/multipack-\(arch)" }
    static var archive: String { dist + "/multipack.tgz" }
    static var assetPath: String { "/releases/download/v\(version)/" }
}

@Suite(.enabled(if: Packaged.enabled), .serialized) struct ReleaseScriptTests {
    @Test func releaseCommitsTheDigestOnTheBranchTagsItAndLeavesTheAssets() throws {
        let (output, source) = try Released.result.get()
        let checkout = Released.checkout
        let digest = String(try Shell.run("sha256sum", [Released.binary]).stdout.prefix(64))
        #expect(output.stdout.contains("sha256_\(Released.arch) = \"\(digest)\""), "\(output.all)")
        #expect(output.stdout.components(separatedBy: "+ swift build").count <= 3, "each command shown once")

        // C′ is the default branch's head, the child of C, tagged; it names the release in buildpack.toml
        // and in the README's deploy lines, and changes nothing else.
        let head = try Shell.gitOutput(["rev-parse", "main"], in: checkout)
        #expect(try Shell.gitOutput(["rev-parse", "v\(Released.version)^{commit}"], in: checkout) == head)
        #expect(try Shell.gitOutput(["rev-parse", "main~1"], in: checkout) == source)
        #expect(
            try Shell.gitOutput(["diff", "--name-only", source, head], in: checkout) == "README.md\nbuildpack.toml")
        let readme = try Shell.gitOutput(["show", "main:README.md"], in: checkout)
        for line in [
            "heroku buildpacks:set https://github.com/multipack/multipack#v\(Released.version)\n",
            "https://github.com/multipack/multipack/releases/download/v\(Released.version)/multipack.tgz\n",
            "https://github.com/multipack/multipack/releases/download/v\(Released.version)/SHA256SUMS",
        ] {
            #expect(readme.contains(line), "\(line)")
        }
        #expect(!readme.contains("/v0.1.0/") && !readme.contains("#v0.1.0"))
        let toml = try Shell.gitOutput(["show", "main:buildpack.toml"], in: checkout)
        #expect(toml.contains("version = \"\(Released.version)\""))
        #expect(toml.contains("sha256_\(Released.arch) = \"\(digest)\""), "\(toml)")
        #expect(toml.contains("homepage = \"https://github.com/multipack/multipack\""))
        #expect(try Shell.gitOutput(["status", "--porcelain", "--untracked-files=no"], in: checkout).isEmpty)

        let sums = try String(contentsOfFile: Released.dist + "/SHA256SUMS", encoding: .utf8)
        #expect(sums.contains("\(digest)  multipack-\(Released.arch)"))
        #expect(try Shell.run("sha256sum", ["--check", "SHA256SUMS"], in: Released.dist).status == 0)
        // The archive's buildpack.toml is the one committed: it names its own binary.
        let packed = try Shell.run("tar", ["-xzOf", Released.archive, "buildpack.toml"]).stdout
        #expect(packed == toml + "\n")
        // The binary says which release it is and names C, the commit it was built from.
        let version = try Shell.run(Released.binary, ["--version"])
        #expect(version.stdout == "multipack \(Released.version) (commit \(source.prefix(12)))\n", "\(version.all)")
    }

    /// The release's archive again, from the same commit C and version: the same bytes. The
    /// checkout goes back to C for it (same paths, same scratch: nothing is compiled again).
    @Test func packagingTwiceGivesByteIdenticalArchives() throws {
        let (first, source) = try Packaged.archive.get()
        let temp = try TempDir("package-again")
        try Shell.git(["checkout", "--quiet", "--detach", source], in: Released.checkout)
        defer { try? Shell.git(["checkout", "--quiet", "main"], in: Released.checkout) }
        let second = temp.path + "/second.tgz"
        let result = try Shell.run(
            Repo.binary,
            [
                "package", "--source", Released.checkout, "--release", Released.version, "--output", second,
                "--scratch-path", Released.base + "/scratch",
            ], environment: Released.environment)
        #expect(result.status == 0, "\(result.all)")
        let a = try #require(FileManager.default.contents(atPath: first))
        let b = try #require(FileManager.default.contents(atPath: second))
        #expect(a == b)
    }

    @Test func aReleaseIsNeverMadeTwice() throws {
        _ = try Released.result.get()
        let again = try Shell.run(
            Released.checkout + "/scripts/release.sh", [Released.version], in: Released.checkout,
            environment: Released.environment)
        #expect(again.status == 1)
        #expect(again.stderr.contains("The tag v\(Released.version) exists already"), "\(again.all)")
    }
}

/// Heroku's deploys of the released repository, with nothing but bash, curl and git on the build
/// image: the shims find no binary in the clone, and compile fetches the one buildpack.toml names.
@Suite(.enabled(if: Packaged.enabled), .serialized) struct HerokuDeployTests {
    /// What Heroku does with `heroku buildpacks:set https://github.com/multipack/multipack[#REF]`:
    /// a fresh clone for every build.
    func herokuClone(_ ref: String, in temp: TempDir, as name: String = "buildpack") throws -> String {
        let dir = temp.path + "/" + name
        try Shell.git(["clone", "--quiet", "--branch", ref, Released.checkout, dir], in: temp.path)
        #expect(!FileManager.default.fileExists(atPath: dir + "/vendor"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/.build"))
        return dir
    }

    /// A shim run as Heroku runs it: no Swift on PATH, no MULTIPACK_* in the environment.
    func heroku(_ buildpack: String, _ verb: String, _ arguments: [String], tmp: String) throws -> Output {
        var env = Multipack.environment(["PATH": herokuLikePath, "TMPDIR": tmp])
        for name in env.keys where name.hasPrefix("MULTIPACK_") { env[name] = nil }
        return try Shell.run(buildpack + "/bin/" + verb, arguments, environment: env)
    }

    /// The release's assets where GitHub would have them, and the URL template for the config var.
    func releaseServer() throws -> (LoopbackHTTPServer, String) {
        let server = try LoopbackHTTPServer(routes: [:], mounts: [Released.assetPath: Released.dist])
        return (server, server.url("/releases/download/v{version}/multipack-{arch}"))
    }

    func files(_ path: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
    }

    @Test func theFirstDeployFromTheDefaultBranchDownloadsOnceAndTheNextUsesTheCache() throws {
        _ = try Released.result.get()
        #expect(try Shell.run("/bin/sh", ["-c", "PATH=\(herokuLikePath) command -v swift"]).status != 0)
        let temp = try TempDir("first-deploy")
        let (server, template) = try releaseServer()
        defer { server.stop() }
        let asset = Released.assetPath + "multipack-\(Released.arch)"
        let buildpack = try herokuClone("main", in: temp)
        let node = try gitChild("node", in: temp)
        let python = try gitChild("python", in: temp)
        let app = try App(
            "python-node", in: temp, buildpacks: "file://\(node)\n\(python)\n",
            config: ["MULTIPACK_BINARY_URL": template])
        let tmp = temp.sub("tmp")

        // detect is bash alone: no PATH at all, nothing downloaded, nothing written.
        let detect = try Shell.run(buildpack + "/bin/detect", [app.build], environment: ["PATH": "/nonexistent"])
        #expect(detect.status == 0 && detect.stdout == "Multipack\n", "\(detect.all)")
        #expect(server.requestCount(asset) == 0)
        #expect(!FileManager.default.fileExists(atPath: buildpack + "/vendor"))

        let compile = try heroku(buildpack, "compile", [app.build, app.cache, app.env], tmp: tmp)
        #expect(compile.status == 0, "\(compile.all)")
        #expect(compile.stderr.contains("Downloading multipack \(Released.version) for \(Released.arch)"))
        #expect(compile.stdout.contains("python installed"), "\(compile.stdout)")
        #expect(server.requestCount(asset) == 1)
        let digest = String(try Shell.run("sha256sum", [Released.binary]).stdout.prefix(64))
        #expect(files(app.cache + "/.multipack/bin") == [digest])
        let release = try heroku(buildpack, "release", [app.build], tmp: tmp)
        #expect(release.status == 0)
        #expect(release.stdout.contains("\"web\": \"gunicorn app:app\""), "\(release.all)")
        let report = try heroku(buildpack, "report", [app.build, app.cache, app.env], tmp: tmp)
        #expect(report.status == 0 && report.stdout.contains("outcome: \"succeeded\""), "\(report.all)")
        #expect(report.stdout.contains("multipack_version: \"\(Released.version)\""))

        // The next deploy: a fresh clone of the buildpack, the same CACHE_DIR: nothing downloaded.
        let next = try herokuClone("main", in: temp, as: "buildpack-2")
        let again = try heroku(next, "compile", [app.build, app.cache, app.env], tmp: tmp)
        #expect(again.status == 0, "\(again.all)")
        #expect(again.stderr.contains("Using multipack \(Released.version) for \(Released.arch) from the cache"))
        #expect(server.requestCount(asset) == 1)
        #expect(try heroku(next, "release", [app.build], tmp: tmp).stdout.contains("gunicorn"))
        #expect(files(tmp).isEmpty)
    }

    @Test func aReleaseTagDeploysTheSameWay() throws {
        _ = try Released.result.get()
        let temp = try TempDir("tag-deploy")
        let (server, template) = try releaseServer()
        defer { server.stop() }
        let buildpack = try herokuClone("v\(Released.version)", in: temp)
        let node = try gitChild("node", in: temp)
        let app = try App("python-node", in: temp, buildpacks: "file://\(node)\n")
        let tmp = temp.sub("tmp")
        // Here the URL comes from the environment, as on a CI that is not Heroku.
        var env = Multipack.environment(["PATH": herokuLikePath, "TMPDIR": tmp, "MULTIPACK_BINARY_URL": template])
        env["MULTIPACK_BUILDPACK_DIR"] = nil
        let compile = try Shell.run(buildpack + "/bin/compile", [app.build, app.cache, app.env], environment: env)
        #expect(compile.status == 0, "\(compile.all)")
        #expect(server.requestCount(Released.assetPath + "multipack-\(Released.arch)") == 1)
    }

    @Test func aBinaryWhoseDigestDiffersRunsNothingAndKeepsNothing() throws {
        _ = try Released.result.get()
        let temp = try TempDir("release-wrong")
        let asset = Released.assetPath + "multipack-\(Released.arch)"
        // Another build of multipack: a working binary, just not the released one.
        let other = Array(try #require(FileManager.default.contents(atPath: Repo.binary)))
        let server = try LoopbackHTTPServer(routes: [asset: .serve(body: other)])
        defer { server.stop() }
        let buildpack = try herokuClone("main", in: temp)
        let node = try gitChild("node", in: temp)
        let app = try App(
            "python-node", in: temp, buildpacks: "file://\(node)\n",
            config: ["MULTIPACK_BINARY_URL": server.url("/releases/download/v{version}/multipack-{arch}")])
        let tmp = temp.sub("tmp")
        let before = try Shell.gitOutput(["status", "--porcelain", "--ignored"], in: buildpack)

        for verb in ["compile", "test-compile"] {
            let result = try heroku(buildpack, verb, [app.build, app.cache, app.env], tmp: tmp)
            #expect(result.status == 1, "\(result.all)")
            #expect(result.stderr.contains("is not the one expected"), "\(result.all)")
            #expect(result.stderr.contains("It was deleted, not run, and nothing was kept."))
            #expect(!result.all.contains("Installing node"))
        }
        #expect(server.requestCount(asset) == 2)
        // Nothing kept: no binary, no record, nothing in the app, the cache or TMPDIR.
        #expect(try Shell.gitOutput(["status", "--porcelain", "--ignored"], in: buildpack) == before)
        #expect(!app.exists(".heroku"))
        #expect(files(app.cache).isEmpty)
        #expect(files(tmp).isEmpty)
    }

    @Test func aCachedBinaryThatWasChangedIsDeletedAndDownloadedAgain() throws {
        _ = try Released.result.get()
        let temp = try TempDir("cache-changed")
        let (server, template) = try releaseServer()
        defer { server.stop() }
        let digest = String(try Shell.run("sha256sum", [Released.binary]).stdout.prefix(64))
        let buildpack = try herokuClone("main", in: temp)
        let node = try gitChild("node", in: temp)
        let app = try App(
            "python-node", in: temp, buildpacks: "file://\(node)\n", config: ["MULTIPACK_BINARY_URL": template])
        // A child (which shares CACHE_DIR) replaced the kept binary with something else.
        try temp.write(
            "cache/.multipack/bin/\(digest)", "#!/bin/sh\necho tampered > \(temp.path)/ran\n", executable: true)
        let compile = try heroku(buildpack, "compile", [app.build, app.cache, app.env], tmp: temp.sub("tmp"))
        #expect(compile.status == 0, "\(compile.all)")
        #expect(compile.stderr.contains("was changed on disk: it was deleted, and is downloaded again"))
        #expect(!FileManager.default.fileExists(atPath: temp.path + "/ran"))
        #expect(server.requestCount(Released.assetPath + "multipack-\(Released.arch)") == 1)
        let kept = try Shell.run("sha256sum", [app.cache + "/.multipack/bin/\(digest)"]).stdout
        #expect(kept.hasPrefix(digest))
    }
}

/// release.sh's refusals; none of these builds anything.
@Suite struct ReleaseInputTests {
    func repository(in temp: TempDir) throws -> String {
        let repo = temp.sub("repo")
        try FileManager.default.createDirectory(atPath: repo + "/scripts", withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            atPath: Repo.root + "/scripts/release.sh", toPath: repo + "/scripts/release.sh")
        try FileManager.default.copyItem(atPath: Repo.root + "/buildpack.toml", toPath: repo + "/buildpack.toml")
        try Shell.git(["init", "--quiet", "--initial-branch=main"], in: repo)
        try Shell.git(["add", "-A"], in: repo)
        try Shell.git(["commit", "--quiet", "-m", "x"], in: repo)
        return repo
    }

    @Test func releaseRefusesABadVersionADirtyCheckoutAndADetachedHead() throws {
        let temp = try TempDir("release-input")
        let repo = try repository(in: temp)
        let env = Shell.gitEnvironment.merging(["MULTIPACK": "/bin/false"]) { $1 }

        let bad = try Shell.run(repo + "/scripts/release.sh", ["next"], in: repo, environment: env)
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("next is not a version"))
        #expect(try Shell.run(repo + "/scripts/release.sh", [], in: repo, environment: env).status == 2)

        try "# edited\n".write(toFile: repo + "/buildpack.toml", atomically: true, encoding: .utf8)
        let dirty = try Shell.run(repo + "/scripts/release.sh", ["1.0.0"], in: repo, environment: env)
        #expect(dirty.status == 1)
        #expect(dirty.stderr.contains("uncommitted changes"))
        try Shell.git(["checkout", "--quiet", "buildpack.toml"], in: repo)

        try Shell.git(["checkout", "--quiet", "--detach"], in: repo)
        let detached = try Shell.run(repo + "/scripts/release.sh", ["1.0.0"], in: repo, environment: env)
        #expect(detached.status == 1)
        #expect(detached.stderr.contains("HEAD is not on a branch"))
        #expect(try Shell.gitOutput(["tag", "-l"], in: repo).isEmpty)
    }
}
