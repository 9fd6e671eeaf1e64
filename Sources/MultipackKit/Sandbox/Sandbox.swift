import Glibc

/// A private user and mount namespace that looks like a Heroku build or dyno from inside
/// (SPEC §15), made by bubblewrap: a fresh root holding the host's (or a stack's) top-level
/// directories read-only, a private `/tmp`, an empty writable `/app`, and the directories the
/// build works on bound in where Heroku has them. The network is the host's (fetches and
/// loopback ports work as they do outside); the process runs as a non-root user.
public struct Sandbox: Sendable {
    public struct Bind: Sendable {
        public var source: String
        public var target: String
        public var writable: Bool
    }

    /// bubblewrap's path.
    var bwrap: String
    /// The root whose top-level entries make `/`: the host's, or a stack's root filesystem.
    var root = "/"
    /// `/tmp` inside (writable; a directory the caller removes afterwards).
    var tmp: String
    /// `/app` inside (writable).
    var app: String
    var binds: [Bind] = []
    /// This machine's directories shown at their own paths on a stack root too (the Swift runtime
    /// of a binary that does not link it statically).
    var hostDirectories: [String] = []
    var workingDirectory = "/app"

    /// The uid the process has inside: the caller's own, or 1000 for root, so a build never runs
    /// as root (Heroku's never do). Files it writes belong to the caller outside.
    static var insideUID: uid_t { getuid() == 0 ? 1000 : getuid() }
    static var insideGID: gid_t { getgid() == 0 ? 1000 : getgid() }

    /// Where a local build or run can have namespaces, or why not. `MULTIPACK_SANDBOX=off` says
    /// they are unavailable (for tests and for machines where bubblewrap is broken).
    public static func backend(_ environment: [String: String]) -> Result<String, Unavailable> {
        if let setting = environment[HiddenVariable.sandbox], ["0", "off", "no", "false"].contains(setting) {
            return .failure(Unavailable(reason: "MULTIPACK_SANDBOX=\(setting)"))
        }
        let directories = (environment["PATH"] ?? HerokuEnvironment.path).split(separator: ":")
        let candidates: [String] = directories.map { String($0) + "/bwrap" }
        guard let bwrap = candidates.first(where: { Files.isExecutable($0) }) else {
            return .failure(Unavailable(reason: "bubblewrap (bwrap) is not installed"))
        }
        if let max = try? Files.read("/proc/sys/user/max_user_namespaces"),
            Int(max.trimmingCharacters("\n")) == 0
        {
            return .failure(Unavailable(reason: "user namespaces are disabled (user.max_user_namespaces is 0)"))
        }
        return .success(bwrap)
    }

    public struct Unavailable: Error, Sendable {
        public var reason: String
    }

    init(bwrap: String, root: String = "/", tmp: String, app: String) {
        self.bwrap = bwrap
        self.root = root
        self.tmp = tmp
        self.app = app
    }

    mutating func bind(_ source: String, at target: String? = nil, writable: Bool = false) {
        binds.append(Bind(source: source, target: target ?? source, writable: writable))
    }

    /// `command` run inside: bwrap's own arguments, then the command's. Its environment is
    /// exactly the command's (bubblewrap passes its own on).
    func wrap(_ command: Command) -> Command {
        var arguments = [
            "--unshare-user", "--uid", String(Self.insideUID), "--gid", String(Self.insideGID),
            "--die-with-parent",
        ]
        // What a stack image has at its root and a build needs; each mount costs set-up time
        // (SPEC §15's budget), so the user's home, /sys and the rest stay outside.
        let wanted: Set<String> = ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "opt", "var", "srv"]
        let base = root == "/" ? "" : root
        for name in Files.list(root).sorted() {
            let path = base + "/" + name
            var info = stat()
            guard lstat(path, &info) == 0 else { continue }
            if info.st_mode & S_IFMT == S_IFLNK, let target = Self.symlinkTarget(path) {
                arguments += ["--symlink", target, "/" + name]
            } else if root != "/", hostDirectories.contains(where: { $0.hasPrefix("/" + name + "/") }) {
                // A read-only directory cannot take a new mount point: a tmpfs holding the
                // root's entries can, and is made read-only once the host's directory is in.
                arguments += ["--tmpfs", "/" + name]
                for entry in Files.list(path) {
                    if let target = Self.symlinkTarget(path + "/" + entry) {
                        arguments += ["--symlink", target, "/\(name)/\(entry)"]
                    } else {
                        arguments += ["--ro-bind", path + "/" + entry, "/\(name)/\(entry)"]
                    }
                }
                for directory in hostDirectories where directory.hasPrefix("/" + name + "/") {
                    arguments += ["--ro-bind", directory, directory]
                }
                arguments += ["--remount-ro", "/" + name]
            } else if wanted.contains(name) {
                arguments += ["--ro-bind", path, "/" + name]
            }
        }
        for directory in hostDirectories
        where root == "/" || !Files.exists(base + "/" + directory.split(separator: "/")[0]) {
            arguments += ["--ro-bind", directory, directory]
        }
        arguments += ["--proc", "/proc", "--dev", "/dev"]
        if root == "/" {
            // systemd-resolved's resolv.conf is a link into /run.
            if let target = Self.symlinkTarget("/etc/resolv.conf"), let start = target.firstRange(of: "/run/"),
                let cut = target.lastIndex(of: "/"), start.lowerBound < cut
            {
                let directory = String(target[start.lowerBound..<cut])
                arguments += ["--ro-bind-try", directory, directory]
            }
        } else {
            // The stack's own resolver settings would not reach this machine's network.
            for file in ["/etc/resolv.conf", "/etc/hosts"] where Files.isRegularFile(base + file) {
                arguments += ["--ro-bind-try", file, file]
            }
        }
        arguments += ["--bind", tmp, "/tmp", "--bind", app, "/app"]
        for bind in binds {
            arguments += [bind.writable ? "--bind" : "--ro-bind-try", bind.source, bind.target]
        }
        arguments += ["--chdir", command.workingDirectory ?? workingDirectory, "--", command.executable]
        return Command(
            bwrap, arguments + command.arguments, environment: command.environment, stdout: command.stdout,
            stderr: command.stderr)
    }

    /// The directories of the Swift runtime libraries this binary loaded, when it is not linked
    /// statically (a debug build): a stack's root does not have them.
    static func runtimeLibraryDirectories() -> [String] {
        guard let maps = try? Files.read("/proc/self/maps") else { return [] }
        var directories: [String] = []
        for line in maps.split(separator: "\n") {
            guard let slash = line.firstIndex(of: "/") else { continue }
            let path = String(line[slash...])
            guard path.contains("/lib/swift/") || path.contains("/libswift") || path.contains("libFoundation"),
                let cut = path.lastIndex(of: "/")
            else { continue }
            let directory = String(path[..<cut])
            if !directories.contains(directory) { directories.append(directory) }
        }
        return directories
    }

    static func symlinkTarget(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
