import CMultipackSpawn
import Glibc

/// The direct backend's steps as the forked child reads them (CMultipackSpawn's
/// `enter_sandbox` in spawn.c): who the child becomes, the uid and gid maps, then (kind, source,
/// target) triples that build the new root at `/newroot` from the old one, seen at `/oldroot`.
/// Sources are resolved here, where allocating is allowed: the child only makes mount points and
/// mounts. A plan without a namespace only says which ids the child takes.
struct NamespacePlan: Sendable {
    /// spawn.c's `struct identity`: its own user namespace (an ordinary caller), root's (the
    /// root made as root, the maps written from outside, the ids then taken for good), or no
    /// namespace and the ids taken on the host.
    enum Mode: String, Sendable {
        case own = "s"
        case root = "r"
        case idsOnly = "d"
    }

    var mode: Mode
    /// The ids the child takes: inside the namespace, or on the host.
    var ids: (uid: uid_t, gid: gid_t)
    var maps: (uid: String, gid: String)
    /// The namespace owned binds are idmapped through (root's); nil: they are plain binds.
    var idmap: IdmapNamespace?
    var steps: [String] = []

    /// What spawn.c reads: the identity ("<mode> <uid> <gid> <idmap descriptor>"), the maps, the steps.
    var words: [String] {
        ["\(mode.rawValue) \(ids.uid) \(ids.gid) \(idmap?.descriptor ?? -1)", maps.uid, maps.gid] + steps
    }

    /// A private user, mount and PID namespace where `user` is uid and gid 1000.
    init(user: BuildUser, steps: [Sandbox.Step], idmap: IdmapNamespace? = nil) {
        mode = user.isIsolated ? .root : .own
        ids = (BuildUser.insideUID, BuildUser.insideGID)
        maps = ("\(BuildUser.insideUID) \(user.uid) 1\n", "\(BuildUser.insideGID) \(user.gid) 1\n")
        self.idmap = user.isIsolated ? idmap : nil
        for step in steps {
            switch step {
            case .bind(let source, let target, let writable, let optional, let owned):
                bind(source, at: target, writable: writable, optional: optional, owned: owned)
            case .tmpfs(let target): add("t", "", target)
            case .symlink(let text, let target): add("s", text, target)
            case .remountReadOnly(let target): add("o", "", target)
            case .proc(let target):
                // The PID namespace's own procfs (the host's where a new one is refused); the
                // corners that could change the machine are covered read-only.
                add("p", "/oldroot/proc", target)
                for corner in ["sys", "sysrq-trigger", "irq", "bus"] {
                    bind("/proc/" + corner, at: target + "/" + corner, writable: false, optional: true)
                }
            case .dev(let target):
                // Only the harmless devices: the host's /dev would give the machine's disks to
                // whoever the build's user can open them as.
                add("t", "", target)
                for device in ["null", "zero", "full", "random", "urandom", "tty"] {
                    bind("/dev/" + device, at: target + "/" + device, writable: true, optional: true)
                }
                let links = [
                    ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                    ("stderr", "/proc/self/fd/2"), ("core", "/proc/kcore"), ("ptmx", "pts/ptmx"),
                ]
                for (name, text) in links { add("s", text, target + "/" + name) }
                add("d", "", target + "/shm")
                add("P", "", target + "/pts")
            }
        }
    }

    /// No namespace: the child takes `user`'s ids on the host (no supplementary group, no
    /// capability, no_new_privs) before it execs: a root caller's build where there are no namespaces.
    init(idsOf user: BuildUser) {
        mode = .idsOnly
        ids = (user.uid, user.gid)
        maps = ("", "")
    }

    private mutating func add(_ kind: String, _ source: String, _ target: String) {
        steps += [kind, source, "/newroot" + target]
    }

    /// Binds the real path (a link in the source would resolve against the wrong root in the
    /// child); a directory gets a directory as mount point, anything else a file.
    /// A `+` after the kind: the caller's own, idmapped onto the build's user (root's builds).
    private mutating func bind(_ source: String, at target: String, writable: Bool, optional: Bool, owned: Bool = false)
    {
        let mark = owned ? "+" : ""
        guard let real = realpath(source, nil) else {
            if !optional { add((writable ? "b" : "r") + mark, "/oldroot" + source, target) }
            return
        }
        let resolved = String(cString: real)
        free(real)
        let kind = Files.isDirectory(resolved) ? (writable ? "b" : "r") : (writable ? "B" : "R")
        add(kind + mark, "/oldroot" + resolved, target)
    }

    /// What step `index` (from the child's report) did, for the error message.
    func describe(step index: Int) -> String {
        if mode == .idsOnly { return "taking the ids \(ids.uid):\(ids.gid)" }
        let at = (index - 1) * 3
        guard index > 0, at + 2 < steps.count else {
            return mode == .root ? "making the mount, PID and user namespace" : "making the user and mount namespace"
        }
        let target = String(steps[at + 2].dropFirst("/newroot".count))
        let source =
            steps[at + 1].hasPrefix("/oldroot") ? String(steps[at + 1].dropFirst("/oldroot".count)) : steps[at + 1]
        switch steps[at].prefix(1) {
        case "s": return "linking \(target) to \(source)"
        case "t", "d", "P", "p": return "making \(target)"
        case "o": return "making \(target) read-only"
        default: return "mounting \(source) at \(target)"
        }
    }
}

/// A user namespace that maps the caller's ids onto the build's user, for idmapped mounts: the
/// caller's files are the build's through them, and what the build writes is the caller's on disk.
final class IdmapNamespace: Sendable {
    let descriptor: Int32

    init?(_ user: BuildUser) {
        let descriptor = Spawner.starting.withLock { _ in
            multipack_idmap_namespace(user.callerUID, user.uid, user.callerGID, user.gid)
        }
        guard descriptor >= 0 else { return nil }
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    /// Whether the file system `path` is on takes an idmapped mount (ext4, xfs, btrfs, tmpfs
    /// since Linux 6.3 do; NFS does not).
    func canMap(_ path: String) -> Bool { multipack_idmap_check(path, descriptor) == 0 }
}
