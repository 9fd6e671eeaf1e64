import Foundation
import Testing

/// Every command the README and docs/ show is run or checked by scripts/check-readme.sh (none can
/// rot); this runs the script with the binary under test and, when packaging is on, the release's
/// assets, which it installs as a user would.
@Suite(.serialized) struct ReadmeCommandsTests {
    @Test func everyReadmeCommandRunsOrIsChecked() throws {
        let temp = try TempDir("readme")
        var env = Multipack.environment(["MULTIPACK": Repo.binary, "TMPDIR": temp.path])
        for name in env.keys where name.hasPrefix("MULTIPACK_") { env[name] = nil }
        if Packaged.enabled, (try? Released.result.get()) != nil { env["MULTIPACK_README_DIST"] = Released.dist }
        let result = try Shell.run(Repo.root + "/scripts/check-readme.sh", [], in: Repo.root, environment: env)
        #expect(result.status == 0, "\(result.all)")
        #expect(!result.stdout.contains("FAILED"), "\(result.stdout)")
        // The first screen's install, build and "Try it" line really ran, from a fresh shell.
        #expect(result.stdout.contains("ran      scripts/install.sh"), "\(result.stdout)")
        #expect(result.stdout.contains("ran      multipack --version (a fresh shell)"), "\(result.stdout)")
        #expect(result.stdout.contains("ran      multipack build fixtures/apps/python-node"), "\(result.stdout)")
        #expect(result.stdout.contains("ran      Try it: multipack run "), "\(result.stdout)")
        #expect(result.stdout.contains("answered on 127.0.0.1:"), "\(result.stdout)")
        if env["MULTIPACK_README_DIST"] != nil {
            #expect(result.stdout.contains("ran      curl -fsSLO "), "\(result.stdout)")
        }
        print(result.stdout)
    }
}
