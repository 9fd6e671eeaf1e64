import Foundation
import Testing

/// The buildpack archive `multipack package` writes: the one scripts/release.sh made in the release
/// test's clone (`Released`), so that a test run makes one release build, not two.
/// `MULTIPACK_TEST_PACKAGE=0` skips these tests.
enum Packaged {
    static let enabled = ProcessInfo.processInfo.environment["MULTIPACK_TEST_PACKAGE"] != "0"

    /// The archive, and the commit its binary was built from.
    static var archive: Result<(path: String, source: String), TestFailure> {
        Released.result.map { (Released.archive, $0.source) }
    }
}

/// PATH without the Swift toolchain, as on Heroku's build image.
let herokuLikePath = "/usr/bin:/bin"

@Suite(.enabled(if: Packaged.enabled), .serialized) struct PackageTests {
    @Test func packagedArchiveBuildsAnAppWithoutSwift() throws {
        let (archive, source) = try Packaged.archive.get()
        let arch = ShimTests.arch

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
        #expect(version.stdout == "multipack \(Released.version) (commit \(source.prefix(12)))\n", "\(version.all)")

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
        #expect(report.stdout.contains("multipack_commit: \"\(source)"))
        #expect(report.stdout.contains("outcome: \"succeeded\""))
    }
}
