import Foundation
import Testing

/// The buildpack archive `multipack package` writes, made once per test run (a release build) under
/// the git-ignored `.build-package/`, which is also the release build's own scratch directory.
/// `MULTIPACK_TEST_PACKAGE=0` skips these tests.
enum Packaged {
    static let directory = Repo.root + "/.build-package/test"
    static let enabled = ProcessInfo.processInfo.environment["MULTIPACK_TEST_PACKAGE"] != "0"

    static let archive: Result<(path: String, output: String), TestFailure> = {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let output = try package(to: directory + "/first.tgz")
            return .success((directory + "/first.tgz", output))
        } catch {
            return .failure(error as? TestFailure ?? TestFailure("\(error)"))
        }
    }()

    static func package(to path: String) throws -> String {
        let result = try Shell.run(Repo.binary, ["package", "--output", path, "--source", Repo.root])
        guard result.status == 0 else { throw TestFailure("multipack package failed:\n\(result.all)") }
        return result.stdout
    }
}

/// PATH without the Swift toolchain, as on Heroku's build image.
let herokuLikePath = "/usr/bin:/bin"

@Suite(.enabled(if: Packaged.enabled), .serialized) struct PackageTests {
    @Test func packagedArchiveBuildsAnAppWithoutSwift() throws {
        let (archive, output) = try Packaged.archive.get()
        let arch = try Shell.run("uname", ["-m"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(output.contains("sha256_\(arch) = \""))

        let listing = try Shell.run("tar", ["tzf", archive]).stdout.split(separator: "\n").map(String.init)
        for member in [
            "bin/detect", "bin/compile", "bin/release", "lib/locate-multipack.sh", "buildpack.toml", "README.md",
            "LICENSE", "vendor/multipack-\(arch)",
        ] {
            #expect(listing.contains(member), "\(member) missing from \(listing)")
        }
        // [publish.Ignore] and the build's own records stay out.
        #expect(
            !listing.contains {
                $0.hasPrefix("Sources/") || $0.hasPrefix("Tests/") || $0.hasPrefix("fixtures/")
                    || $0.hasPrefix(".multipack")
            })
        #expect(!listing.contains("Package.swift"))
        let verbose = try Shell.run("tar", ["tvzf", archive]).stdout
        #expect(verbose.split(separator: "\n").allSatisfy { $0.contains("root/root") && $0.contains("1970-01-01") })

        let temp = try TempDir("packaged")
        let buildpack = temp.sub("buildpack")
        #expect(try Shell.run("tar", ["xzf", archive, "-C", buildpack]).status == 0)
        let node = try gitChild("node", in: temp)
        let python = try gitChild("python", in: temp)
        let app = try App("python-node", in: temp, buildpacks: "file://\(node)\n\(python)\n")
        var env = Multipack.environment(["PATH": herokuLikePath])
        env["MULTIPACK_BUILDPACK_DIR"] = nil

        let version = try Shell.run(buildpack + "/vendor/multipack-\(arch)", ["--version"], environment: env)
        let commit = try Shell.gitOutput(["rev-parse", "HEAD"], in: Repo.root)
        #expect(
            version.stdout.hasPrefix("multipack 0.") && version.stdout.contains("(commit \(commit.prefix(12))"),
            "\(version.all)")

        let detect = try Shell.run(buildpack + "/bin/detect", [app.build], environment: env)
        #expect(detect.status == 0 && detect.stdout == "Multipack\n", "\(detect.all)")
        let compile = try Shell.run(buildpack + "/bin/compile", [app.build, app.cache, app.env], environment: env)
        #expect(compile.status == 0, "\(compile.all)")
        #expect(compile.stdout.contains("python installed"))
        let release = try Shell.run(buildpack + "/bin/release", [app.build], environment: env)
        #expect(release.status == 0)
        #expect(release.stdout.contains("\"web\": \"gunicorn app:app\""))
        #expect(release.stdout.contains("\"assets\": \"node build.js\""))
        let report = try Shell.run(buildpack + "/bin/report", [app.build, app.cache, app.env], environment: env)
        #expect(report.stdout.contains("multipack_commit: \"\(commit)"))
        #expect(report.stdout.contains("outcome: \"succeeded\""))
    }

    @Test func packagingTwiceGivesByteIdenticalArchives() throws {
        let (first, _) = try Packaged.archive.get()
        let second = Packaged.directory + "/second.tgz"
        _ = try Packaged.package(to: second)
        let a = try #require(FileManager.default.contents(atPath: first))
        let b = try #require(FileManager.default.contents(atPath: second))
        #expect(a == b)
    }
}

/// The shims' download path (SPEC §12): no binary in the buildpack, a release binary on a
/// loopback server, checked against the sha256 in buildpack.toml.
@Suite struct ShimDownloadTests {
    static let arch =
        (try? Shell.run("uname", ["-m"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? "x86_64"

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

    func run(_ dir: String, _ verb: String, _ arguments: [String], extra: [String: String] = [:]) throws -> Output {
        var env = Multipack.environment(extra)
        env["PATH"] = herokuLikePath
        return try Shell.run(dir + "/bin/" + verb, arguments, environment: env)
    }

    func vendorFiles(_ dir: String) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: dir + "/vendor")) ?? []
    }

    static let binary: [UInt8] = Array(FileManager.default.contents(atPath: Repo.binary) ?? Data())
    static let binarySHA256: String = {
        let out = (try? Shell.run("sha256sum", [Repo.binary]).stdout) ?? ""
        return String(out.prefix(64))
    }()

    @Test func rightDigestRunsAndIsKeptForTheNextCall() throws {
        let temp = try TempDir("download")
        let server = try LoopbackHTTPServer(routes: ["/v9.8.7/multipack-\(Self.arch)": .serve(body: Self.binary)])
        defer { server.stop() }
        let dir = try checkout(in: temp, url: server.url("/v{version}/multipack-{arch}"), sha256: Self.binarySHA256)
        let app = try App(nil, in: temp, buildpacks: "heroku/python\n")

        let first = try run(dir, "detect", [app.build])
        #expect(first.status == 0 && first.stdout == "Multipack\n", "\(first.all)")
        #expect(first.stderr.contains("Downloading multipack 9.8.7 for \(Self.arch)"))
        #expect(vendorFiles(dir) == ["multipack-\(Self.arch)"])
        let second = try run(dir, "detect", [app.build])
        #expect(second.status == 0 && !second.stderr.contains("Downloading"))
        #expect(server.requestCount("/v9.8.7/multipack-\(Self.arch)") == 1)
    }

    @Test func mirrorOverrideIsUsed() throws {
        let temp = try TempDir("mirror")
        let server = try LoopbackHTTPServer(routes: ["/mirror/multipack-\(Self.arch)": .serve(body: Self.binary)])
        defer { server.stop() }
        let dir = try checkout(in: temp, url: "http://127.0.0.1:9/unused", sha256: Self.binarySHA256)
        let app = try App(nil, in: temp, buildpacks: "heroku/python\n")
        let result = try run(
            dir, "detect", [app.build],
            extra: ["MULTIPACK_BINARY_URL": server.url("/mirror/multipack-{arch}?token=secret")])
        #expect(result.status == 0, "\(result.all)")
        #expect(!result.all.contains("secret"))
        #expect(server.requestCount("/mirror/multipack-\(Self.arch)") == 1)
    }

    @Test func wrongDigestIsRefusedAndNothingIsLeft() throws {
        let temp = try TempDir("baddigest")
        let server = try LoopbackHTTPServer(routes: ["/multipack-\(Self.arch)": .serve(body: Self.binary)])
        defer { server.stop() }
        let dir = try checkout(
            in: temp, url: server.url("/multipack-{arch}"), sha256: String(repeating: "0", count: 64))
        let app = try App(nil, in: temp, buildpacks: "heroku/python\n")
        let result = try run(dir, "detect", [app.build])
        #expect(result.status == 1)
        #expect(
            result.stderr.contains(
                " !     The multipack binary downloaded from \(server.url("/multipack-\(Self.arch)")) is not the one buildpack.toml lists."
            ))
        #expect(result.stderr.contains("got \(Self.binarySHA256)"))
        #expect(!result.stdout.contains("Multipack"))
        #expect(vendorFiles(dir).isEmpty)
        // A later call downloads again rather than running anything left behind.
        _ = try run(dir, "detect", [app.build])
        #expect(server.requestCount("/multipack-\(Self.arch)") == 2)
        #expect(vendorFiles(dir).isEmpty)
    }

    @Test func serverDownGivesTheClearMessage() throws {
        let temp = try TempDir("down")
        let server = try LoopbackHTTPServer(routes: [:])
        let url = server.url("/multipack-{arch}")
        server.stop()
        let dir = try checkout(in: temp, url: url, sha256: Self.binarySHA256)
        let app = try App(nil, in: temp, buildpacks: "heroku/python\n")
        let result = try run(dir, "compile", [app.build, app.cache, app.env])
        #expect(result.status == 1)
        #expect(
            result.stderr.contains(" !     multipack has no binary for \(Self.arch) in \(dir), and cannot get one:"),
            "\(result.all)")
        #expect(result.stderr.contains("the download from http://127.0.0.1:"))
        #expect(result.stderr.contains("there is no Swift toolchain to build it"))
        #expect(result.stderr.contains("MULTIPACK_BINARY_URL"))
        #expect(vendorFiles(dir).isEmpty)
    }

    @Test func noDigestListedIsNotDownloaded() throws {
        let temp = try TempDir("nodigest")
        let server = try LoopbackHTTPServer(routes: ["/multipack-\(Self.arch)": .serve(body: Self.binary)])
        defer { server.stop() }
        let dir = try checkout(in: temp, url: server.url("/multipack-{arch}"), sha256: nil)
        let app = try App(nil, in: temp, buildpacks: "heroku/python\n")
        let result = try run(dir, "detect", [app.build])
        #expect(result.status == 1)
        #expect(result.stderr.contains("buildpack.toml lists no sha256_\(Self.arch)"))
        #expect(server.requestCount("/multipack-\(Self.arch)") == 0)
    }
}
