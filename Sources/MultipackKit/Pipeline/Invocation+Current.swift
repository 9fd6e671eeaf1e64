import FoundationEssentials

extension Invocation {
    /// This process: its environment, and the buildpack directory it belongs to.
    public static func current() -> Invocation {
        let environment = ProcessInfo.processInfo.environment
        return Invocation(buildpackDir: locateBuildpackDir(environment), environment: environment)
    }

    /// The shims say where the buildpack is; otherwise it is found above the binary
    /// (`vendor/multipack-<arch>` in a package, `.build/release/multipack` in a checkout).
    static func locateBuildpackDir(_ environment: [String: String]) -> String {
        if let dir = environment[HiddenVariable.buildpackDir], !dir.isEmpty { return Files.absolute(dir) }
        var dir = LocalBuild.executablePath()
        for _ in 0..<5 {
            dir = String(dir[..<(dir.lastIndex(of: "/") ?? dir.startIndex)])
            if dir.isEmpty { break }
            if Files.exists(dir + "/bin/compile") && Files.exists(dir + "/buildpack.toml") { return dir }
        }
        return Files.absolute(".")
    }
}
