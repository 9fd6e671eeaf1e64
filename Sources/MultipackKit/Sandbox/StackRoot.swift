import Glibc

/// `--stack-root DIR|TARBALL`: the root filesystem a build runs on instead of this machine's
/// (a debootstrap'd directory, or a tarball of a root).
struct StackRoot {
    var directory: String
    /// The Heroku stack the root is, from its `/etc/os-release` (Ubuntu 24.04 is heroku-24);
    /// nil when it is no Heroku stack (then `--stack` names it).
    var stack: String?

    static func prepare(_ path: String, caller: [String: String], log: Log, doing: String = "Building") throws
        -> StackRoot
    {
        let path = Files.absolute(path)
        let directory: String
        if Files.isDirectory(path) {
            directory = path
        } else if Files.isRegularFile(path) {
            directory = try extracted(path, caller: caller, log: log)
        } else {
            throw MultipackError.usage(
                "--stack-root \(path) is neither a directory nor a tarball.",
                hint:
                    "Give the root filesystem of a stack: a directory, or a .tar/.tar.gz of one; or build on the stack's image (no --stack-root)."
            )
        }
        guard Files.isDirectory(directory + "/usr") else {
            throw MultipackError.usage(
                "--stack-root \(path) has no usr/: it is not a root filesystem.",
                hint: "Give the root of a stack (a debootstrap'd directory, or a tarball of one), or --stack-image REF."
            )
        }
        log.step("\(doing) on the stack root \(path)")
        return StackRoot(directory: directory, stack: stackName(directory + "/etc/os-release"))
    }

    /// A tarball is unpacked once into the user's cache and reused while it is unchanged (same
    /// path, size and time). GNU tar, not multipack's extractor: a root filesystem is full of
    /// absolute symlinks, which multipack rightly refuses in a buildpack.
    static func extracted(_ tarball: String, caller: [String: String], log: Log) throws -> String {
        var info = stat()
        stat(tarball, &info)
        let key = cacheKey("\(tarball) \(info.st_size) \(info.st_mtim.tv_sec)").prefix(12)
        let root = stacksRoot(caller)
        let name = tarball.split(separator: "/").last.map(String.init) ?? "stack"
        let directory = "\(root)/\(name)-\(key)"
        if Files.isDirectory(directory) { return directory }
        try Files.makeDirectory(root)
        let stagingDirectory = try ScratchDirectory(prefix: "\(name)-\(key)\(partial)", in: root)
        defer { stagingDirectory.remove() }
        let staging = stagingDirectory.path
        log.step("Unpacking the stack root \(tarball) into \(directory)")
        let result = try Spawner.run(
            Command(
                "tar", ["-xf", tarball, "-C", staging, "--no-same-owner", "--exclude=./dev/*", "--exclude=dev/*"],
                environment: ["PATH": HerokuEnvironment.path]))
        guard result.termination.succeeded else {
            throw MultipackError.usage(
                "Could not unpack the stack root \(tarball): tar ended with \(result.termination): "
                    + (result.stderrText.lines.first.map(String.init) ?? ""),
                hint: "Give a tarball of a root filesystem, or an unpacked directory.")
        }
        try Files.move(staging, to: directory)
        return directory
    }

    /// `path` with every link and `..` resolved, or nil when it does not exist.
    static func realPath(_ path: String) -> String? {
        guard let real = realpath(path, nil) else { return nil }
        defer { free(real) }
        return String(cString: real)
    }

    static func stacksRoot(_ caller: [String: String]) -> String {
        LocalState.appsRoot(caller).replacing("/apps", with: "/stacks")
    }

    static let partial = ".partial-"

    /// Removes the partial roots (hundreds of MB) that builds killed while unpacking left.
    static func sweepPartials(_ caller: [String: String]) {
        ScratchDirectory.sweep(prefixes: [partial], in: stacksRoot(caller), containing: true)
    }

    static func stackName(_ osRelease: String) -> String? {
        guard let text = try? Files.read(osRelease) else { return nil }
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            fields[String(line[..<equals])] = String(line[line.index(after: equals)...]).trimmingCharacters("\"")
        }
        guard fields["ID"] == "ubuntu", let version = fields["VERSION_ID"], version.hasSuffix(".04"),
            let major = Int(version.dropLast(3)), major >= 20
        else { return nil }
        return "heroku-\(major)"
    }
}
