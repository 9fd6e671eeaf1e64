import Glibc

/// A private user and mount namespace that looks like a Heroku build or dyno from inside
/// (SPEC §15): a fresh root holding the host's (or a stack's) top-level directories read-only, a
/// private `/tmp`, an empty writable `/app`, and the directories the build works on bound in where
/// Heroku has them. The network is the host's (fetches and loopback ports work as they do outside);
/// the process runs as uid 1000, which is the caller outside, or for root an id that owns nothing
/// (`BuildUser`). bubblewrap makes it where it is installed and the caller is not root, multipack
/// itself otherwise (the same steps, in the forked child before exec).
public struct Sandbox: Sendable {
    public struct Bind: Sendable {
        public var source: String
        public var target: String
        public var writable: Bool
        /// The caller's own (the cache, the config vars): the build sees it as its own.
        public var owned: Bool
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
        /// A bind mount; an optional one is skipped when its source does not exist. An owned one
        /// is the caller's, idmapped onto the build's user for root.
        case bind(String, at: String, writable: Bool, optional: Bool, owned: Bool = false)
        case tmpfs(String)
        case symlink(String, at: String)
        case remountReadOnly(String)
        case proc(String)
        case dev(String)
    }

    var backend: Backend
    /// Who the process is outside.
    var user: BuildUser
    /// The namespace root's owned binds are idmapped through; nil: plain binds (`grantOwnedBinds`).
    var idmap: IdmapNamespace?
    /// The root whose top-level entries make `/`: the host's, or a stack's root filesystem.
    var root = "/"
    /// `/tmp` inside (writable; a directory the caller removes afterwards).
    var tmp: String
    /// `/app` inside (writable).
    var app: String
    var binds: [Bind] = []
    var workingDirectory = "/app"

    /// Where a local build or run can have namespaces, or why not: bubblewrap when it is
    /// installed, else multipack's own when this machine lets a user make a namespace.
    /// `MULTIPACK_SANDBOX` forces one: `off` (for tests and machines where namespaces are broken),
    /// `bubblewrap` or `direct`. Root's builds are always multipack's own: bubblewrap run by root
    /// maps uid 1000 onto root, where multipack maps it onto an id that owns nothing and idmaps
    /// the build's own directories, which bubblewrap has no option for.
    public static func backend(_ environment: [String: String], user: BuildUser) -> Result<Backend, Unavailable> {
        let setting = environment[HiddenVariable.sandbox]?.lowercased() ?? ""
        if ["0", "off", "no", "false"].contains(setting) {
            return .failure(Unavailable(reason: "MULTIPACK_SANDBOX=\(setting)"))
        }
        if let max = try? Files.read("/proc/sys/user/max_user_namespaces"),
            Int(max.trimmingCharacters("\n")) == 0
        {
            return .failure(Unavailable(reason: "user namespaces are disabled (user.max_user_namespaces is 0)"))
        }
        if user.isIsolated {
            if let reason = directUnavailable(user) {
                return .failure(Unavailable(reason: reason, fix: NamespaceDiagnosis.current()?.fix))
            }
            return .success(.direct)
        }
        if setting == "direct" { return .success(.direct) }
        let directories = (environment["PATH"] ?? HerokuEnvironment.path).split(separator: ":")
        if let bwrap = directories.map({ String($0) + "/bwrap" }).first(where: { Files.isExecutable($0) }) {
            return .success(.bubblewrap(bwrap))
        }
        if setting == "bubblewrap" || setting == "bwrap" {
            return .failure(Unavailable(reason: "bubblewrap (bwrap) is not installed"))
        }
        if let reason = directUnavailable(user) {
            return .failure(
                Unavailable(
                    reason: "bubblewrap (bwrap) is not installed, and " + reason, fix: NamespaceDiagnosis.current()?.fix
                ))
        }
        return .success(.direct)
    }

    /// Why this machine refuses multipack's own namespace, found by trying it in a child (a
    /// kernel setting or a security module may forbid it whatever /proc/sys says); nil when it works.
    static func directUnavailable(_ user: BuildUser) -> String? {
        // An empty root: the set-up is all that is tried, the command is not found and not run.
        var command = Command("true", environment: [:], stdout: .discard, stderr: .discard)
        command.namespace = NamespacePlan(user: user, steps: [])
        do {
            _ = try Spawner.run(command)
        } catch let error as SpawnError where error.namespaceStep == nil {
        } catch {
            return "this machine refuses \(user.isIsolated ? "root a mount and PID" : "a user") namespace (\(error))"
                + (NamespaceDiagnosis.current().map { ": " + $0.cause } ?? "")
        }
        return nil
    }

    public struct Unavailable: Error, Sendable {
        public var reason: String
        /// What would make namespaces possible, when multipack can tell why they are refused.
        public var fix: String?

        init(reason: String, fix: String? = nil) {
            self.reason = reason
            self.fix = fix
        }

        /// Said after the warning that the build runs without namespaces.
        public var fixSentence: String { fix.map { " " + $0 } ?? "" }
    }

    /// Why `backend` is none, or nil.
    static func reason(_ backend: Result<Backend, Unavailable>) -> String? {
        if case .failure(let unavailable) = backend { return unavailable.reason }
        return nil
    }

    /// Where a passed SSH agent's socket is inside (SPEC §15); `SSH_AUTH_SOCK` says so there.
    static let sshAgent = "/run/multipack/ssh-agent"

    /// Binds multipack's own binary at `path` and returns the command line that starts it there:
    /// the binary itself where the root shows everything it loaded (this machine's), else this
    /// machine's loader running it with its own libraries (`HostLoader`), since a stack's would
    /// not do.
    mutating func bindMultipack(at path: String) -> [String] {
        bind(LocalBuild.executablePath(), at: path)
        let root = root
        guard HostLoader.isNeeded(onRoot: root, shows: { Self.shows($0, ofRoot: root) }),
            let loader = HostLoader.current()
        else { return [path] }
        loader.bind(into: &self)
        return loader.command(running: path)
    }

    init(backend: Backend, user: BuildUser, root: String = "/", tmp: String, app: String) {
        self.backend = backend
        self.user = user
        self.root = root
        self.tmp = tmp
        self.app = app
    }

    mutating func bind(_ source: String, at target: String? = nil, writable: Bool = false, owned: Bool = false) {
        binds.append(Bind(source: source, target: target ?? source, writable: writable, owned: owned))
    }

    /// Makes the caller's own directories (`/tmp`, `/app`, the owned binds) the build's, for a
    /// root caller: idmapped where their file system allows it, handed over otherwise (then the
    /// bind is a plain one; an owned file that cannot be idmapped is bound as it is). The
    /// handover is ended once the build is over, whatever its outcome.
    ///
    /// Through an idmapped mount a file the build makes is root's on disk, setuid if the build
    /// says so, until the walk back clears the bit: `tmp` and `app` must be out of every other
    /// user's reach meanwhile (a directory of mode 0700 above them). A writable directory of the
    /// caller's elsewhere (`--cache`), which others may reach, is handed over instead: what the
    /// build makes there is the build's user's.
    mutating func grantOwnedBinds(marker: String?) throws -> Handover {
        guard user.isIsolated else { return Handover(user: user) }
        let idmap = IdmapNamespace(user)
        var handed: [String] = []
        var idmapped: [String] = []
        if let idmap, idmap.canMap(tmp) && idmap.canMap(app) {
            idmapped = [tmp, app]
        } else {
            handed = [tmp, app]
            ownDirectoriesHandedOver = true
        }
        for index in binds.indices where binds[index].owned {
            let bind = binds[index]
            let mapped = !(bind.writable && Files.isDirectory(bind.source)) && idmap?.canMap(bind.source) == true
            if !mapped { binds[index].owned = false }
            guard Files.isDirectory(bind.source) else { continue }
            if !mapped {
                handed.append(bind.source)
            } else if bind.writable {
                idmapped.append(bind.source)
            }
        }
        self.idmap = idmap
        return try Handover.begin(user: user, handed: handed, idmapped: idmapped, marker: marker)
    }

    /// The mount points of binds inside `/tmp` or `/app` (multipack's binary, `--cache`, the
    /// config vars), made in their sources here: root's namespace cannot make them through an
    /// idmapped mount, where root's own id is not mapped.
    private func makeNestedMountPoints() throws {
        for bind in binds {
            for (inside, host) in [("/tmp", tmp), ("/app", app)] where bind.target.hasPrefix(inside + "/") {
                let path = host + bind.target.dropFirst(inside.count)
                if Files.isDirectory(bind.source) {
                    try Files.makeDirectory(path)
                } else if !Files.exists(path) {
                    try Files.makeDirectory(String(path[..<path.lastIndex(of: "/")!]))
                    let descriptor = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
                    guard descriptor >= 0 else { throw FileError(path: path, action: "create", errno: errno) }
                    close(descriptor)
                }
            }
        }
    }

    /// `/tmp` and `/app` were handed over rather than idmapped.
    private var ownDirectoriesHandedOver = false

    /// `command` run inside. Its environment is exactly the command's (bubblewrap passes its own on).
    func wrap(_ command: Command) -> Command {
        let directory = command.workingDirectory ?? workingDirectory
        switch backend {
        case .bubblewrap(let bwrap):
            var arguments = [
                "--unshare-user", "--uid", String(BuildUser.insideUID), "--gid", String(BuildUser.insideGID),
                "--unshare-pid", "--die-with-parent",
            ]
            for step in steps() {
                switch step {
                case .bind(let source, let target, let writable, let optional, _):
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
            // Mount points under /tmp and /app for root's namespace: made here, where they can be.
            if user.isIsolated { try? makeNestedMountPoints() }
            var wrapped = command
            wrapped.executable = insidePath(of: command.executable, searching: command.environment["PATH"])
            wrapped.workingDirectory = directory
            wrapped.namespace = NamespacePlan(user: user, steps: steps(), idmap: idmap)
            return wrapped
        }
    }

    /// Runs a wrapped command; a namespace that could not be made is said as such, with the way out.
    static func run(_ command: Command, in context: BuildContext) throws -> ProcessResult {
        do {
            return try context.processes.run(command, stop: context.stop)
        } catch let error as SpawnError where error.namespaceStep != nil {
            let diagnosis = NamespaceDiagnosis.current()
            throw MultipackError.build(
                "The namespace could not be set up: \(error).", details: diagnosis.map { ["Why: " + $0.cause] } ?? [],
                hint: diagnosis?.fix
                    ?? "Install bubblewrap (apt-get install bubblewrap), or set MULTIPACK_SANDBOX=off to run without namespaces."
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

    /// The root's making, in order: top-level entries, /proc, /dev, the resolver, /tmp, /app and
    /// the binds. Every read-only mount is also `nosuid` and `nodev`: no build can change what the
    /// next one runs on, nor gain anything from a setuid file or a device node in an image.
    func steps() -> [Step] {
        var steps: [Step] = []
        let base = root == "/" ? "" : root
        let resolver = resolverSteps()
        var shown: Set<String> = []
        for name in Files.list(root).sorted() where Self.shows(name, ofRoot: root) {
            let path = base + "/" + name
            var info = stat()
            guard lstat(path, &info) == 0 else { continue }
            if info.st_mode & S_IFMT == S_IFLNK, let target = Self.symlinkTarget(path) {
                steps.append(.symlink(target, at: "/" + name))
            } else if info.st_mode & S_IFMT == S_IFDIR {
                shown.insert(name)
                if name == "etc", let etc = resolver.heldEtc {
                    steps += etc
                } else {
                    steps.append(.bind(path, at: "/" + name, writable: false, optional: false))
                }
            }
        }
        // A root without /etc still gets the resolver's files, in an /etc of their own.
        if !shown.contains("etc"), !Files.lexists(base + "/etc"), let etc = resolver.heldEtc { steps += etc }
        steps += [.proc("/proc"), .dev("/dev")]
        steps += resolver.binds
        let own = !ownDirectoriesHandedOver
        steps.append(.bind(tmp, at: "/tmp", writable: true, optional: false, owned: own))
        steps.append(.bind(app, at: "/app", writable: true, optional: false, owned: own))
        let holders = mountPointHolders(shown)
        for directory in holders { steps += Self.holder(base + directory, at: directory) }
        for bind in binds {
            steps.append(
                .bind(
                    bind.source, at: bind.target, writable: bind.writable, optional: !bind.writable, owned: bind.owned))
        }
        // Once their mount points are made, the holders are as read-only as the root they stand for.
        steps += holders.map { .remountReadOnly($0) }
        return steps
    }

    /// What of a root is `/` inside: of this machine's, its system directories and nothing else
    /// (no /home, no /root, no /var: SPEC §15's `--stack-root /`); of a stack's, everything but
    /// what the namespace makes itself.
    static func shows(_ name: String, ofRoot root: String) -> Bool {
        if root == "/" { return ["usr", "bin", "sbin", "etc", "opt"].contains(name) || name.hasPrefix("lib") }
        return !["proc", "dev", "sys", "tmp", "app", "run"].contains(name)
    }

    /// This machine's resolver on the root: its `/etc/resolv.conf` and `/etc/hosts`, read-only.
    /// On this machine's own root only a systemd-resolved link into /run needs its directory; a
    /// stack's files are covered by the host's (a link of the stack's into /run gets the host's
    /// file where it leads), and where a stack has neither file nor such a link, its /etc becomes
    /// a holder of its own entries that takes them.
    func resolverSteps() -> (heldEtc: [Step]?, binds: [Step]) {
        if root == "/" {
            // systemd-resolved's resolv.conf is a link into /run.
            guard let target = Self.symlinkTarget("/etc/resolv.conf"), let start = target.firstRange(of: "/run/"),
                let cut = target.lastIndex(of: "/"), start.lowerBound < cut
            else { return (nil, []) }
            let directory = String(target[start.lowerBound..<cut])
            return (nil, [.bind(directory, at: directory, writable: false, optional: true)])
        }
        var binds: [Step] = []
        var overEtc: [String] = []
        var holds = false
        for file in ["/etc/resolv.conf", "/etc/hosts"] where Files.isRegularFile(file) {
            var info = stat()
            let present = lstat(root + file, &info) == 0
            if present, info.st_mode & S_IFMT == S_IFLNK, let text = Self.symlinkTarget(root + file),
                let inside = Self.resolve(text, from: "/etc"), inside.hasPrefix("/run/")
            {
                binds.append(.bind(file, at: inside, writable: false, optional: true))
            } else {
                overEtc.append(file)
                holds = holds || !present || info.st_mode & S_IFMT != S_IFREG
            }
        }
        guard holds else {
            return (nil, binds + overEtc.map { .bind($0, at: $0, writable: false, optional: true) })
        }
        let names = Set(overEtc.map { String($0.dropFirst("/etc/".count)) })
        let held =
            Self.holder(root + "/etc", at: "/etc", except: names)
            + overEtc.map { .bind($0, at: $0, writable: false, optional: false) } + [.remountReadOnly("/etc")]
        return (held, binds)
    }

    /// `text`, a link's in directory `directory`, as an absolute path inside the root (`..` above
    /// `/` stays at `/`, as the kernel has it).
    static func resolve(_ text: String, from directory: String) -> String? {
        var parts: [Substring] = text.hasPrefix("/") ? [] : directory.split(separator: "/")
        for part in text.split(separator: "/") {
            if part == ".." {
                _ = parts.popLast()
            } else if part != "." {
                parts.append(part)
            }
        }
        return parts.isEmpty ? nil : "/" + parts.joined(separator: "/")
    }

    /// A tmpfs at `target` holding the entries of `source`: a read-only directory cannot take a
    /// new mount point, a tmpfs can.
    static func holder(_ source: String, at target: String, except: Set<String> = []) -> [Step] {
        var steps: [Step] = [.tmpfs(target)]
        for entry in Files.list(source) where !except.contains(entry) {
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

    static func symlinkTarget(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
