import Glibc

/// The app's `bin/pre_compile` and `bin/post_compile` (SPEC §7.4): run in place by multipack,
/// exactly once each, and hidden from every child while it runs by a rename inside `BUILD_DIR/bin`.
/// The hooks are whatever is in BUILD_DIR at the time: a child that replaces BUILD_DIR's contents
/// (a monorepo buildpack) takes the old ones away and brings its own.
struct AppHooks {
    static let names = ["pre_compile", "post_compile"]
    /// Config vars a hook does not get from ENV_DIR, as on Heroku.
    static let withheld: Set<String> = [
        "PATH", "GIT_DIR", "CPATH", "CPPATH", "LD_PRELOAD", "LIBRARY_PATH", "LD_LIBRARY_PATH",
    ]
    /// A dot name inside `bin/`, so that it goes wherever `bin/` goes (same directory, same file
    /// system) and no `[ -f bin/post_compile ]` or `bin/*` of a child sees it.
    static let heldPrefix = ".multipack-held-"

    var dirs: BuildDirectories
    /// The hooks hidden from the child running now.
    private var held: [String] = []
    /// True while the `bin/pre_compile` in BUILD_DIR has not run yet.
    private(set) var preCompilePending = true

    init(dirs: BuildDirectories) {
        self.dirs = dirs
    }

    private func path(_ name: String) -> String { dirs.build + "/bin/" + name }
    private func heldPath(_ name: String) -> String { dirs.build + "/bin/" + Self.heldPrefix + name }

    /// Puts back the hooks a killed build left hidden, unless something took their place since.
    /// Returns the names put back.
    func recoverLeftovers() -> [String] {
        // A `bin` a build made a link may lead anywhere, and this may run as root.
        var info = stat()
        guard lstat(dirs.build + "/bin", &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { return [] }
        var restored: [String] = []
        for name in Self.names where Files.exists(heldPath(name)) {
            if Files.lexists(path(name)) {
                unlink(heldPath(name))
            } else if rename(heldPath(name), path(name)) == 0 {
                restored.append(name)
            }
        }
        return restored
    }

    func present(_ name: String) -> Bool { Files.isRegularFile(path(name)) }

    /// Whether a `bin/pre_compile` is in BUILD_DIR and has not run yet.
    var preCompileDue: Bool { preCompilePending && present("pre_compile") }

    /// Hides the hooks from the next child: renamed inside `bin/`, just before its detect.
    mutating func hide() throws {
        for name in Self.names where Files.lexists(path(name)) {
            guard rename(path(name), heldPath(name)) == 0 else {
                throw MultipackError.build(
                    "Could not hide the app's bin/\(name) from the buildpacks: \(String(cString: strerror(errno)))",
                    hint: "multipack renames it inside BUILD_DIR/bin while each buildpack runs; check the permissions.")
            }
            held.append(name)
        }
    }

    /// Brings the hidden hooks back after the child's release (and on any failure). A hook the
    /// child took away stays gone, and one it put in its place stays: that is the app's hook now.
    /// A `pre_compile` the child brought in has not run yet.
    mutating func restore() {
        for name in held {
            if Files.lexists(heldPath(name)) {
                if Files.lexists(path(name)) {
                    unlink(heldPath(name))
                    if name == "pre_compile" { preCompilePending = true }
                } else {
                    rename(heldPath(name), path(name))
                }
            } else if name == "pre_compile" {
                preCompilePending = present(name)
            }
        }
        if !held.contains("pre_compile") && present("pre_compile") { preCompilePending = true }
        held = []
    }

    static func environment(base: [String: String], dirs: BuildDirectories, configVars: [String: String]) -> [String:
        String]
    {
        var env = base
        for (name, value) in configVars where !withheld.contains(name) && BuildEnvironment.isName(Substring(name)) {
            env[name] = value
        }
        env["BUILD_DIR"] = dirs.build
        env["CACHE_DIR"] = dirs.cache
        env["ENV_DIR"] = dirs.env
        return env
    }

    /// Runs one hook at its own path with cwd BUILD_DIR. One without its executable bit is made
    /// executable and run through its `#!` line, as the Python buildpack does (bash without one).
    mutating func run(_ name: String, environment: [String: String], log: Log, runner: StageRunner) throws -> Double {
        let path = self.path(name)
        if name == "pre_compile" { preCompilePending = false }
        var info = stat()
        if stat(path, &info) == 0, info.st_mode & 0o111 == 0 {
            chmod(path, (info.st_mode & 0o7777) | ((info.st_mode & 0o444) >> 2))
        }
        let command =
            Self.hasShebang(path) && Files.isExecutable(path)
            ? Command(path, [], in: dirs.build, environment: environment, stdout: .inherit, stderr: .inherit)
            : Command("bash", [path], in: dirs.build, environment: environment, stdout: .inherit, stderr: .inherit)
        log.step("Running bin/\(name)")
        return try runner.run(command, owner: .hook(name), stage: name).succeeded { termination in
            .build(
                "The app's bin/\(name) hook failed with \(termination)", details: ["Stage: \(name)"],
                hint: "bin/\(name) is your app's own script; its output above says why.")
        }.seconds
    }

    static func hasShebang(_ path: String) -> Bool {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var bytes: (UInt8, UInt8) = (0, 0)
        return withUnsafeMutableBytes(of: &bytes) { read(descriptor, $0.baseAddress, 2) } == 2
            && bytes == (UInt8(ascii: "#"), UInt8(ascii: "!"))
    }
}
