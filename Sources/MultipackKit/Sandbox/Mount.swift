import Glibc

/// `--mount HOST:PATH[:ro]` (SPEC §19): a directory of the caller's bound into the namespace of a
/// `build` or `run` at PATH (a source cache at `/var/cache`, an output directory), read-only with
/// `:ro`. Only mounts carry files out: what a command writes under `/app` stays in the namespace.
public struct Mount: Sendable, Equatable {
    /// The host directory, resolved (symlinks followed).
    public var host: String
    /// Where it is inside: absolute, without `.`, `..` or doubled slashes.
    public var path: String
    public var readOnly: Bool

    /// Where Heroku's layout and the namespace's own mounts are: a mount may not be, hold or lie
    /// inside one of them (the build directory is `/tmp/build_<hex>`, under `/tmp`).
    static let reserved = ["/app", "/tmp", "/proc", "/dev", "/sys"]

    /// Host directories a writable mount would hand whole to a build: the system's own.
    static let systemDirectories: Set<String> = [
        "/", "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/var", "/root",
        "/home", "/run", "/opt", "/srv",
    ]

    /// Reads one `--mount` value; a value no namespace could use is a usage error (exit 2),
    /// said before anything runs. Relative host paths are relative to the working directory.
    public static func parse(_ text: String) throws(MultipackError) -> Mount {
        let shown = Masking.text(String(text.prefix(300)))
        func refuse(_ why: String, hint: String = usageHint) -> MultipackError {
            MultipackError.usage("--mount \(shown): \(why).", hint: hint)
        }
        guard !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
            throw refuse("it holds a control character")
        }
        var value = Substring(text)
        var readOnly = false
        if value.hasSuffix(":ro") {
            readOnly = true
            value = value.dropLast(3)
        } else if value.hasSuffix(":rw") {
            value = value.dropLast(3)
        }
        guard let colon = value.lastIndex(of: ":"), colon != value.startIndex else {
            throw refuse("give the host directory and the path inside, separated by a colon")
        }
        let hostText = String(value[..<colon])
        let pathText = String(value[value.index(after: colon)...])
        let path = try insidePath(pathText, refuse: refuse)
        let host = try hostDirectory(hostText, refuse: refuse)
        if !readOnly, systemDirectories.contains(host) {
            throw refuse(
                "\(host) is a system directory, which a command inside could change (and, run by root, would be "
                    + "handed to the build's user for the run)",
                hint: "Mount a directory of your own, or add :ro to mount it read-only.")
        }
        return Mount(host: host, path: path, readOnly: readOnly)
    }

    static let usageHint = "Write --mount HOST_DIR:/path/inside, or HOST_DIR:/path/inside:ro for a read-only one."

    /// The path inside, normalised; refused when it is not absolute, is `/`, or is, holds or lies
    /// inside a reserved path.
    private static func insidePath(_ text: String, refuse: (String, String) -> MultipackError) throws(MultipackError)
        -> String
    {
        guard text.hasPrefix("/") else {
            throw refuse("the path inside must be absolute (it starts with /)", usageHint)
        }
        let parts = text.split(separator: "/")
        guard !parts.contains("..") else { throw refuse("the path inside must not hold `..`", usageHint) }
        let path = "/" + parts.filter { $0 != "." }.joined(separator: "/")
        guard path != "/" else { throw refuse("a mount cannot replace the whole root, /", usageHint) }
        for reserved in reserved
        where path == reserved || path.hasPrefix(reserved + "/") || reserved.hasPrefix(path + "/") {
            let relation = path == reserved ? "is" : path.hasPrefix(reserved + "/") ? "lies inside" : "holds"
            throw refuse(
                "\(path) \(relation) \(reserved), which the namespace makes itself"
                    + (reserved == "/app" ? " (files written under /app stay inside; mounts carry results out)" : "")
                    + (reserved == "/tmp" ? " (the build directory is there)" : ""),
                "Mount it elsewhere: /var/cache, /output, /opt/… (not /app, /tmp, /proc, /dev or /sys).")
        }
        return path
    }

    /// The host directory, made absolute and resolved; refused when it is not an existing directory.
    private static func hostDirectory(_ text: String, refuse: (String, String) -> MultipackError)
        throws(MultipackError) -> String
    {
        let absolute = Files.absolute(text)
        guard let real = realpath(absolute, nil) else {
            throw refuse(
                "the host directory \(absolute) does not exist",
                "Create it first (mkdir -p \(absolute)): multipack mounts existing directories only.")
        }
        let resolved = String(cString: real)
        free(real)
        guard Files.isDirectory(resolved) else {
            throw refuse(
                "\(absolute) is not a directory" + (resolved == absolute ? "" : " (it resolves to \(resolved))"),
                "Mount a directory; to hand one file in, mount the directory that holds it.")
        }
        return resolved
    }

    /// Refuses two mounts at one path, or one inside another's (the inner one's mount point would
    /// be made in the outer one's host directory).
    public static func checkDistinct(_ mounts: [Mount]) throws(MultipackError) {
        for (index, mount) in mounts.enumerated() {
            for other in mounts[..<index]
            where other.path == mount.path || mount.path.hasPrefix(other.path + "/")
                || other.path.hasPrefix(mount.path + "/")
            {
                throw MultipackError.usage(
                    "--mount \(mount.host):\(mount.path) and --mount \(other.host):\(other.path) overlap.",
                    hint: "Give each mount a path of its own, neither inside the other.")
            }
        }
    }
}

extension Sandbox {
    /// Binds the caller's `--mount` directories at their paths inside: the caller's own, so for a
    /// root caller they reach the build's user as the build directory does (idmapped, or handed
    /// over for the run and back after, `grantOwnedBinds`).
    mutating func bind(_ mounts: [Mount]) {
        for mount in mounts { bind(mount.host, at: mount.path, writable: !mount.readOnly, owned: true) }
    }
}

extension Mount {
    /// `--mount` without a namespace to mount in: bad input, said before anything runs.
    static func needNamespace(_ unavailable: Sandbox.Unavailable) -> MultipackError {
        MultipackError.usage(
            "--mount needs a namespace to mount in, and this machine gives none: \(unavailable.reason).",
            hint: "Install bubblewrap (apt-get install bubblewrap) and allow user namespaces, or leave --mount out.")
    }
}

/// A root caller's `--mount` directories during a `run`: handed to the build's user for the run
/// and back after, as a build's are (`Handover`). The marker that lists them lives in a locked
/// directory under the user's cache (`multipack/handovers/run-<pid>-XXXXXX/marker`), so that the
/// next run hands back what a killed one left out.
struct RunHandover {
    private let directory: ScratchDirectory
    private let handover: Handover

    static func root(_ caller: [String: String]) -> String {
        String(LocalState.appsRoot(caller).dropLast("apps".count)) + "handovers"
    }

    /// Grants the sandbox's owned binds (the mounts among them) with a marker kept for the run.
    static func begin(_ sandbox: inout Sandbox, caller: [String: String]) throws -> RunHandover {
        let root = root(caller)
        try LocalState.makePrivateDirectory(root)
        let directory = try ScratchDirectory(prefix: prefix, in: root)
        do {
            return RunHandover(
                directory: directory, handover: try sandbox.grantOwnedBinds(marker: directory.path + "/marker"))
        } catch {
            directory.remove()
            throw error
        }
    }

    /// Hands everything back, then lets the marker go.
    func end() {
        handover.end()
        directory.remove()
    }

    static let prefix = "run-"

    /// What runs that were killed left handed over goes back (their directories are not locked
    /// any more).
    static func recoverLeftovers(caller: [String: String]) {
        let root = root(caller)
        for name in Files.list(root) where name.hasPrefix(prefix) {
            let path = root + "/" + name
            let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard descriptor >= 0 else { continue }
            defer { close(descriptor) }
            guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else { continue }
            Handover.recover(marker: path + "/marker", within: path)
            Files.remove(path)
        }
    }
}
