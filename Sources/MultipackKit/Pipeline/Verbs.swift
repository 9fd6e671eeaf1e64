/// `bin/detect`: multipack applies when `.buildpacks` lists at least one buildpack.
public enum Detect {
    public static func run(buildDir: String) throws -> String {
        let buildDir = Files.absolute(buildDir)
        let path = buildDir + "/.buildpacks"
        guard Files.exists(path) else {
            throw MultipackError.build("No .buildpacks file in the app: multipack has nothing to run.")
        }
        let entries = try BuildpackList.load(path, directory: buildDir)
        guard !entries.isEmpty else {
            throw MultipackError.build(".buildpacks lists no buildpack: multipack has nothing to run.")
        }
        return "Multipack"
    }
}

/// `bin/release`: the release compile merged and saved for this BUILD_DIR.
public enum ReleaseVerb {
    public static func run(buildpackDir: String, buildDir: String) -> String {
        BuildState(buildpackDir: buildpackDir, buildDir: buildDir).release ?? "--- {}\n"
    }
}

/// `bin/report`: flat YAML about the last build of this BUILD_DIR. Never fails.
public enum Report {
    public static func run(buildpackDir: String, buildDir: String) -> String {
        guard let record = BuildRecord.load(BuildState(buildpackDir: buildpackDir, buildDir: buildDir)) else {
            let current = MultipackVersion.current
            return "multipack_version: \(YAML.quoted(current.version))\n"
                + "multipack_commit: \(YAML.quoted(current.commit ?? "unknown"))\noutcome: \"none\"\n"
        }
        return record.reportYAML
    }
}

/// `bin/test` (SPEC §8): each child's `bin/test`, in order, with the environment test-compile made.
public struct TestVerb {
    public var buildDir: String
    public var envDir: String
    public var invocation: Invocation

    public init(buildDir: String, envDir: String, invocation: Invocation) {
        self.buildDir = Files.absolute(buildDir)
        self.envDir = Files.absolute(envDir)
        self.invocation = invocation
    }

    public func run() throws {
        let state = BuildState(buildpackDir: invocation.buildpackDir, buildDir: buildDir)
        guard let record = BuildRecord.load(state), record.outcome == "succeeded" else {
            throw MultipackError.build(
                "There is no successful test-compile to run the tests of.",
                hint: "Heroku CI runs bin/test-compile before bin/test; run it first.")
        }
        let settings = try Settings(configVars: ConfigVars.read(envDir: envDir), environment: invocation.environment)
        var environment = HiddenVariable.removingOwn(invocation.environment)
        environment["GIT_DIR"] = nil
        environment["BUILDPACK_XTRACE"] = settings.xtrace ? "1" : nil
        for name in record.unset { environment[name] = nil }
        environment.merge(record.exported) { $1 }
        let children = record.children.map { child in
            ChildTests.Child(
                name: ChildName(
                    label: "[\(child.position)/\(record.children.count)]",
                    displayName: child.name.isEmpty ? child.url : child.name, url: child.url, version: child.version),
                directory: child.directory)
        }
        let tests = ChildTests(
            buildDir: buildDir, envDir: envDir, environment: environment, log: invocation.log,
            runner: invocation.context.runner(trace: invocation.log.tracer(settings.xtrace)))
        try tests.run(children)
    }
}
