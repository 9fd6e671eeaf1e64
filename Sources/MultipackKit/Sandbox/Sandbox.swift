import Glibc

/// A private user and mount namespace that looks like a Heroku build or dyno from inside
/// (SPEC §15): a fresh root holding the host's (or a stack's) top-level directories read-only, a
/// private `/tmp`, an empty writable `/app`, and the directories the build works on bound in where
/// Heroku has them. The network is the host's (fetches and loopback ports work as they do outside);
/// the process runs as a non-root user. bubblewrap makes it where it is installed, multipack
/// itself otherwise (the same steps, in the forked child before exec).
public struct Sandbox: Sendable {
    public struct Bind: Sendable {
        public var source: String
        public var target: String
        public var writable: Bool
    }

    public enum Backend: Sendable, Equatable {
        /// bubblewrap at this path.
        case bubblewrap(String)
        /// unshare, mounts and pivot_root done by multipack (CMultipackSpawn, spawn.c's enter_sandbox).
        case direct

        /// As `--json` and the log name it.
        public var name: String {
            switch self {
            case .bubblewrap: return "bubblewrap"
            case .direct: return "namespaces"
            }
        }
    }

    /// One step of making the root, in order (bubblewrap's options, one for one).
    enum Step: Sendable {
        /// A bind mount; an optional one is skipped when its source does not exist.
        case bind(String, at: String, writable: Bool, optional: Bool)
        case tmpfs(String)
        case symlink(String, at: String)
        case remountReadOnly(String)
        case proc(String)
        case dev(String)
    }

    var backend: Backend
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

    /// Where a local build or run can have namespaces, or why not: bubblewrap when it is
    /// installed, else multipack's own when this machine lets a user make a namespace.
    /// `MULTIPACK_SANDBOX` forces one: `off` (for tests and machines where namespaces are broken),
    /// `bubblewrap` or `direct`.
    public static func backend(_ environment: [String: String]) -> Result<Backend, Unavailable> {
        let setting = environment[HiddenVariable.sandbox]?.lowercased() ?? ""
        if ["0", "off", "no", "false"].contains(setting) {
            return .failure(Unavailable(reason: "MULTIPACK_SANDBOX=\(setting)"))
        }
        if let max = try? Files.read("/proc/sys/user/max_user_namespaces"),
            Int(max.trimmingCharacters("\n")) == 0
        {
            return .failure(Unavailable(reason: "user namespaces are disabled (user.max_user_namespaces is 0)"))
        }
        if setting == "direct" { return .success(.direct) }
        let directories = (environment["PATH"] ?? HerokuEnvironment.path).split(separator: ":")
        if let bwrap = directories.map({ String($0) + "/bwrap" }).first(where: { Files.isExecutable($0) }) {
            return .success(.bubblewrap(bwrap))
        }
        if setting == "bubblewrap" || setting == "bwrap" {
            return .failure(Unavailable(reason: "bubblewrap (bwrap) is not installed"))
        }
        if let reason = directUnavailable() { return .failure(Unavailable(reason: reason)) }
        return .success(.direct)
    }

    /// Why this machine refuses multipack's own namespace, found by trying it in a child (a
    /// kernel setting or a security module may forbid it whatever /proc/sys says); nil when it works.
    static func directUnavailable() -> String? {
        // An empty root: the set-up is all that is tried, the command is not found and not run.
        var command = Command("true", environment: [:], stdout: .discard, stderr: .discard)
        command.namespace = NamespacePlan(uid: (insideUID, getuid()), gid: (insideGID, getgid()), steps: [])
        do {
            _ = try Spawner.run(command)
        } catch let error as SpawnError where error.namespaceStep == nil {
        } catch {
            return "bubblewrap (bwrap) is not installed, and this machine refuses a user namespace (\(error))"
        }
        return nil
    }

    public struct Unavailable: Error, Sendable {
        public var reason: String
    }

    init(backend: Backend, root: String = "/", tmp: String, app: String) {
        self.backend = backend
        self.root = root
        self.tmp = tmp
        self.app = app
    }

    mutating func bind(_ source: String, at target: String? = nil, writable: Bool = false) {
        binds.append(Bind(source: source, target: target ?? source, writable: writable))
    }

    /// `command` run inside. Its environment is exactly the command's (bubblewrap passes its own on).
    func wrap(_ command: Command) -> Command {
        let directory = command.workingDirectory ?? workingDirectory
        switch backend {
        case .bubblewrap(let bwrap):
            var arguments = [
                "--unshare-user", "--uid", String(Self.insideUID), "--gid", String(Self.insideGID),
                "--unshare-pid", "--die-with-parent",
            ]
            for step in steps() {
                switch step {
                case .bind(let source, let target, let writable, let optional):
                    arguments += [(writable ? "--bind" : "--ro-bind") + (optional ? "-try" : ""), source, target]
                case .tmpfs(let target): arguments += ["--tmpfs", target]
                case .symlink(let text, let target): arguments += ["--symlink", text, target]
                case .remountReadOnly(let target): arguments += ["--remount-ro", target]
                case .proc(let target): arguments += ["--proc", target]
                case .dev(let target): arguments += ["--dev", target]
                }
            }
            arguments += ["--chdir", directory, "--", command.executable]
            var wrapped = command
            wrapped.executable = bwrap
            wrapped.arguments = arguments + command.arguments
            wrapped.workingDirectory = nil
            return wrapped
        case .direct:
            var wrapped = command
            wrapped.executable = insidePath(of: command.executable, searching: command.environment["PATH"])
            wrapped.workingDirectory = directory
            wrapped.namespace = NamespacePlan(
                uid: (Self.insideUID, getuid()), gid: (Self.insideGID, getgid()), steps: steps())
            return wrapped
        }
    }

    /// Runs a wrapped command; a namespace that could not be made is said as such, with the way out.
    static func run(_ command: Command, in context: BuildContext) throws -> ProcessResult {
        do {
            return try context.processes.run(command, stop: context.stop)
        } catch let error as SpawnError where error.namespaceStep != nil {
            throw MultipackError.build(
                "The namespace could not be set up: \(error).",
                hint:
                    "Install bubblewrap (apt-get install bubblewrap), or set MULTIPACK_SANDBOX=off to run without namespaces."
            )
        }
    }

    /// Where a command named without a slash is on the root, found through the command's own
    /// PATH (as bubblewrap looks it up); the child's exec would search multipack's PATH instead.
    func insidePath(of executable: String, searching path: String?) -> String {
        guard !executable.contains("/") else { return executable }
        let base = root == "/" ? "" : root
        let directories = (path ?? HerokuEnvironment.path).split(separator: ":").map(String.init)
        return directories.first { Files.isExecutable(base + $0 + "/" + executable) }.map { $0 + "/" + executable }
            ?? executable
    }

    /// The root's making, in order: top-level directories, /proc, /dev, the resolver, /tmp, /app
    /// and the binds.
    func steps() -> [Step] {
        var steps: [Step] = []
        // What a stack image has at its root and a build needs; each mount costs set-up time
        // (SPEC §15's budget), so the user's home, /sys and the rest stay outside.
        let wanted: Set<String> = ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "opt", "var", "srv"]
        let base = root == "/" ? "" : root
        for name in Files.list(root).sorted() {
            let path = base + "/" + name
            var info = stat()
            guard lstat(path, &info) == 0 else { continue }
            if info.st_mode & S_IFMT == S_IFLNK, let target = Self.symlinkTarget(path) {
                steps.append(.symlink(target, at: "/" + name))
            } else if root != "/", hostDirectories.contains(where: { $0.hasPrefix("/" + name + "/") }) {
                // A read-only directory cannot take a new mount point: a tmpfs holding the
                // root's entries can, and is made read-only once the host's directory is in.
                steps += Self.holder(path, at: "/" + name)
                for directory in hostDirectories where directory.hasPrefix("/" + name + "/") {
                    steps.append(.bind(directory, at: directory, writable: false, optional: false))
                }
                steps.append(.remountReadOnly("/" + name))
            } else if wanted.contains(name) {
                steps.append(.bind(path, at: "/" + name, writable: false, optional: false))
            }
        }
        for directory in hostDirectories
        where root == "/" || !Files.exists(base + "/" + directory.split(separator: "/")[0]) {
            steps.append(.bind(directory, at: directory, writable: false, optional: false))
        }
        steps += [.proc("/proc"), .dev("/dev")]
        if root == "/" {
            // systemd-resolved's resolv.conf is a link into /run.
            if let target = Self.symlinkTarget("/etc/resolv.conf"), let start = target.firstRange(of: "/run/"),
                let cut = target.lastIndex(of: "/"), start.lowerBound < cut
            {
                let directory = String(target[start.lowerBound..<cut])
                steps.append(.bind(directory, at: directory, writable: false, optional: true))
            }
        } else {
            // The stack's own resolver settings would not reach this machine's network.
            for file in ["/etc/resolv.conf", "/etc/hosts"] where Files.isRegularFile(base + file) {
                steps.append(.bind(file, at: file, writable: false, optional: true))
            }
        }
        steps.append(.bind(tmp, at: "/tmp", writable: true, optional: false))
        steps.append(.bind(app, at: "/app", writable: true, optional: false))
        for directory in mountPointHolders(wanted) { steps += Self.holder(base + directory, at: directory) }
        for bind in binds {
            steps.append(.bind(bind.source, at: bind.target, writable: bind.writable, optional: !bind.writable))
        }
        return steps
    }

    /// A tmpfs at `target` holding the entries of `source`: a read-only directory cannot take a
    /// new mount point, a tmpfs can.
    static func holder(_ source: String, at target: String) -> [Step] {
        var steps: [Step] = [.tmpfs(target)]
        for entry in Files.list(source) {
            if let link = symlinkTarget(source + "/" + entry) {
                steps.append(.symlink(link, at: target + "/" + entry))
            } else {
                steps.append(.bind(source + "/" + entry, at: target + "/" + entry, writable: false, optional: false))
            }
        }
        return steps
    }

    /// A bind (the app, a local buildpack, `--cache`, a `--mount`) at a path the root lacks below
    /// one of its read-only directories (an app in /srv/app or /var/tmp/x on this machine, a
    /// mount at /var/cache/sources) has nowhere to go: the deepest directory the root has on that
    /// path becomes a holder. Parents first, each once.
    func mountPointHolders(_ bound: Set<String>) -> [String] {
        var holders: [String] = []
        for bind in binds {
            let parts = bind.target.split(separator: "/").map(String.init)
            guard let top = parts.first, bound.contains(top), !Files.exists(root + bind.target) else { continue }
            var deepest = ""
            for part in parts.dropLast() {
                var info = stat()
                guard lstat(root + deepest + "/" + part, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { break }
                deepest += "/" + part
            }
            if !deepest.isEmpty && !holders.contains(deepest) { holders.append(deepest) }
        }
        return holders.sorted { $0.count < $1.count }
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
