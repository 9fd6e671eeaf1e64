/// `detect`, as `bin/detect` answers it in bash without the binary (SPEC §3): `.buildpacks` is
/// there (looked at, never opened), or app.json's first MiB has a `"buildpacks"` key (a textual
/// test). Compile reads them with the real parsers.
public enum Detect {
    public static func run(buildDir: String) throws -> String {
        let buildDir = Files.absolute(buildDir)
        if Files.lexists(buildDir + "/.buildpacks") { return "Multipack" }
        if let json = try? Files.readRegularFile(buildDir + "/app.json"), hasBuildpacksKey(json.prefix(1 << 20)) {
            return "Multipack"
        }
        throw MultipackError.build(
            "No .buildpacks file in the app (nor a \"buildpacks\" list in its app.json): multipack has nothing to run.")
    }

    /// `"buildpacks"`, blanks, then `:`, as bin/detect's `\"buildpacks\"[[:space:]]*:`.
    static func hasBuildpacksKey(_ bytes: ArraySlice<UInt8>) -> Bool {
        let key = Array("\"buildpacks\"".utf8)
        var index = bytes.startIndex
        while let start = bytes[index...].firstIndex(of: key[0]) {
            index = start + 1
            guard bytes[start...].starts(with: key) else { continue }
            var after = start + key.count
            while after < bytes.endIndex, [9, 10, 11, 12, 13, 32].contains(bytes[after]) { after += 1 }
            if after < bytes.endIndex, bytes[after] == UInt8(ascii: ":") { return true }
        }
        return false
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
