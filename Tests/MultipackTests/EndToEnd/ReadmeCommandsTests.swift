import Foundation
import Testing

/// Every command the README shows is run or checked by scripts/check-readme.sh (none can rot);
/// this runs the script with the binary under test and, when packaging is on, the packaged archive
/// for check-budgets.sh.
@Suite(.serialized) struct ReadmeCommandsTests {
    @Test func everyReadmeCommandRunsOrIsChecked() throws {
        let temp = try TempDir("readme")
        var env = Multipack.environment(["MULTIPACK": Repo.binary, "TMPDIR": temp.path])
        if Packaged.enabled, let archive = try? Packaged.archive.get() {
            env["MULTIPACK_README_ARCHIVE"] = archive.path
        }
        let result = try Shell.run(Repo.root + "/scripts/check-readme.sh", [], in: Repo.root, environment: env)
        #expect(result.status == 0, "\(result.all)")
        #expect(!result.stdout.contains("FAILED"), "\(result.stdout)")
        // The first screen's build and its "Try it" line really ran.
        #expect(
            result.stdout.contains("ran      swift run multipack build fixtures/apps/python-node"), "\(result.stdout)")
        #expect(result.stdout.contains("answered on 127.0.0.1:"), "\(result.stdout)")
        print(result.stdout)
    }
}
