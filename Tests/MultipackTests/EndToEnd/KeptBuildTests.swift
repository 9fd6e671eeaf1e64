import Foundation
import Testing

@testable import MultipackKit

#if canImport(Glibc)
    import Glibc
#endif

/// What a local build keeps for `run` and `report` (SPEC §12, §17): only a build that succeeds
/// replaces it; `ci` keeps its own; config vars are the user's alone.
@Suite struct KeptBuildTests {
    /// The kept build's id, as `run APP` names it ("Using the last build of APP: build_… in …").
    static func usedBuild(_ run: Output) -> String? {
        run.stderr.split(separator: "\n").first { $0.contains("Using the last build of") }?
            .split(separator: " ").first { $0.hasPrefix("build_") }.map(String.init)
    }

    @Test func onlyASuccessfulBuildReplacesTheKeptOneAndCIKeepsItsOwn() throws {
        let world = try LocalWorld("kept")
        let app = try world.app()
        try "web: echo first\n".write(toFile: app + "/Procfile", atomically: true, encoding: .utf8)
        let first = try world.buildJSON([app])
        #expect(first.output.status == 0, "\(first.output.all)")
        let slug = try #require((first.json["slug"] as? [String: Any])?["path"] as? String)
        let slugBytes = try Data(contentsOf: URL(fileURLWithPath: slug))
        let report = try world.multipack(["report", app])
        #expect(report.status == 0, "\(report.all)")
        #expect(report.stdout.contains("outcome: \"succeeded\""), "\(report.stdout)")
        #expect(report.stdout.contains("slug: \"\(slug)\"\n"))
        let built = try #require(
            report.stdout.split(separator: "\n").first { $0.hasPrefix("local_build: ") }?.split(separator: "\"")[1])
        let run = try world.multipack(["run", app, "--", "true"])
        #expect(run.status == 0 && Self.usedBuild(run) == String(built), "\(run.all)")

        // Each of these leaves the first build, its slug and its report as they were, and says so.
        try "web: echo second\n".write(toFile: app + "/Procfile", atomically: true, encoding: .utf8)
        try "- [unclosed\n".write(toFile: app + "/.slugfilter", atomically: true, encoding: .utf8)
        let refused = try world.multipack(["build", app])
        #expect(refused.status == 2, "\(refused.all)")
        try FileManager.default.removeItem(atPath: app + "/.slugfilter")
        let failed = try world.multipack(["build", app, "--buildpack", world.buildpack("fail-compile")])
        #expect(failed.status == 1, "\(failed.all)")
        let badOption = try world.multipack(["build", app, "--pass-env", "NOT_SET_ANYWHERE"])
        #expect(badOption.status == 2, "\(badOption.all)")
        try #"{"environments": {"test": {"scripts": {"test": "echo ci-ran"}}}}"#.write(
            toFile: app + "/app.json", atomically: true, encoding: .utf8)
        let ci = try world.multipack(["ci", app])
        #expect(ci.status == 0 && ci.stdout.contains("ci-ran"), "\(ci.all)")
        for output in [refused, failed] {
            #expect(
                output.stdout.contains("The last successful build (\(built) ")
                    && output.stdout.contains("is kept as it was"),
                "\(output.all)")
        }
        let after = try world.multipack(["run", app, "--", "true"])
        #expect(after.status == 0 && Self.usedBuild(after) == String(built), "\(after.all)")
        let web = try world.multipack(["run", app, "web"])
        #expect(web.stdout == "first\n", "\(web.all)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: slug)) == slugBytes)
        #expect(try world.multipack(["report", app]).stdout == report.stdout)

        // A build that succeeds replaces it whole.
        let second = try world.multipack(["build", app])
        #expect(second.status == 0, "\(second.all)")
        #expect(try world.multipack(["run", app, "web"]).stdout == "second\n")
        #expect(try world.multipack(["report", app]).stdout != report.stdout)
    }

    @Test func anInterruptedBuildLeavesTheKeptOne() throws {
        let world = try LocalWorld("kept-stop")
        let app = try world.app("plain", buildpacks: ["probe"])
        #expect(try world.multipack(["build", app]).status == 0)
        let before = try world.multipack(["report", app]).stdout
        try (world.buildpack("slow") + "\n").write(toFile: app + "/.buildpacks", atomically: true, encoding: .utf8)
        let (process, output) = try SandboxSignalTests.startSlowBuild(world, app, sandbox: "off")
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        try #require(output().contains("slow compile started"), "\(output())")
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        #expect(process.terminationStatus == 128 + SIGINT, "\(output())")
        #expect(output().contains("is kept as it was"), "\(output())")
        #expect(try world.multipack(["report", app]).stdout == before)
        #expect(try world.multipack(["run", app, "--", "cat", "probe.txt"]).status == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: world.tmp).isEmpty)
    }

    @Test func reportOfAnAppNeverBuiltExits1() throws {
        let world = try LocalWorld("kept-none")
        let app = try world.app()
        let report = try world.multipack(["report", app])
        #expect(report.status == 1)
        #expect(report.stderr.contains(" !     \(app) has no local build to report on"), "\(report.all)")
        #expect(report.stderr.contains("multipack build \(app)"))
    }

    @Test func configVarsAreReadableByTheUserAlone() throws {
        let world = try LocalWorld("kept-private")
        let app = try world.app()
        // What an earlier multipack kept in the state's old layout, config vars world-readable.
        let legacy = LocalState.appDirectory(for: app, environment: world.environment)
        try FileManager.default.createDirectory(atPath: legacy + "/env", withIntermediateDirectories: true)
        try "old-secret".write(toFile: legacy + "/env/OLD", atomically: true, encoding: .utf8)
        let build = try world.buildJSON([app, "-e", "SECRET=hunter2"])
        #expect(build.output.status == 0, "\(build.output.all)")
        let slug = try #require((build.json["slug"] as? [String: Any])?["path"] as? String)
        let apps = world.cacheHome + "/multipack/apps"
        let state = apps + "/" + (try #require(try FileManager.default.contentsOfDirectory(atPath: apps).first))
        func mode(_ path: String) throws -> Int {
            try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
        }
        #expect(try mode(state) == 0o700)
        #expect(try mode(state + "/kept/env") == 0o700)
        #expect(try mode(state + "/kept/env/SECRET") == 0o600)
        #expect(try mode(slug + ".env") == 0o600)
        #expect(try String(contentsOfFile: slug + ".env", encoding: .utf8).contains("hunter2"))
        #expect(!FileManager.default.fileExists(atPath: legacy + "/env"), "the old layout's config vars are gone")
    }
}
