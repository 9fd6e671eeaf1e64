/// Each child's `bin/test`, in order, with the environment test-compile left (SPEC §8): the first
/// failure ends the run, and a run that tested nothing never reports success.
struct ChildTests {
    /// A child that was test-compiled: as it is named, and where its files are.
    struct Child {
        var name: ChildName
        var directory: String
    }

    var buildDir: String
    var envDir: String
    var environment: [String: String]
    var log: Log
    var runner: StageRunner

    static let nothingTested = MultipackError.build(
        "Nothing was tested: none of the buildpacks has a bin/test.",
        hint: "Give the app a test script in app.json (environments.test.scripts.test), which Heroku CI runs "
            + "instead, or use buildpacks that can test it (they have bin/test).")

    func run(_ children: [Child]) throws {
        let tested = children.filter { Files.exists($0.directory + "/bin/test") }
        guard !tested.isEmpty else { throw Self.nothingTested }
        for child in tested {
            let name = child.name
            log.step("Testing with \(name.label) \(name.displayName)")
            let command = Command(
                child.directory + "/bin/test", [buildDir, envDir], in: child.directory, environment: environment,
                stdout: .inherit, stderr: .inherit)
            _ = try runner.run(command, owner: .child(name), stage: "test").succeeded { termination in
                .build(
                    "Tests failed: buildpack \(name.label) \(name.displayName)'s bin/test ended with \(termination)",
                    details: ["URL: \(name.url)", "Stage: test"],
                    hint: "The test output above says which tests failed.")
            }
        }
    }
}
