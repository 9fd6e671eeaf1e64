import Glibc

/// The direct backend's steps as the forked child reads them (CMultipackSpawn's
/// `enter_sandbox` in spawn.c): the uid and gid maps, then (kind, source, target) triples that
/// build the new root at `/newroot` from the old one, seen at `/oldroot`. Sources are resolved
/// here, where allocating is allowed: the child only makes mount points and mounts.
struct NamespacePlan: Sendable {
    var words: [String]

    init(uid: (inside: uid_t, outside: uid_t), gid: (inside: gid_t, outside: gid_t), steps: [Sandbox.Step]) {
        words = ["\(uid.inside) \(uid.outside) 1\n", "\(gid.inside) \(gid.outside) 1\n"]
        for step in steps {
            switch step {
            case .bind(let source, let target, let writable, let optional):
                bind(source, at: target, writable: writable, optional: optional)
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
                // Only the harmless devices: the host's /dev would give root's disks to a build
                // that root started (uid 1000 inside is root outside).
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

    private mutating func add(_ kind: String, _ source: String, _ target: String) {
        words += [kind, source, "/newroot" + target]
    }

    /// Binds the real path (a link in the source would resolve against the wrong root in the
    /// child); a directory gets a directory as mount point, anything else a file.
    private mutating func bind(_ source: String, at target: String, writable: Bool, optional: Bool) {
        guard let real = realpath(source, nil) else {
            if !optional { add(writable ? "b" : "r", "/oldroot" + source, target) }
            return
        }
        let resolved = String(cString: real)
        free(real)
        let kind = Files.isDirectory(resolved) ? (writable ? "b" : "r") : (writable ? "B" : "R")
        add(kind, "/oldroot" + resolved, target)
    }

    /// What step `index` (from the child's report) did, for the error message.
    func describe(step index: Int) -> String {
        let at = 2 + (index - 1) * 3
        guard index > 0, at + 2 < words.count else { return "making the user and mount namespace" }
        let target = String(words[at + 2].dropFirst("/newroot".count))
        let source =
            words[at + 1].hasPrefix("/oldroot") ? String(words[at + 1].dropFirst("/oldroot".count)) : words[at + 1]
        switch words[at] {
        case "s": return "linking \(target) to \(source)"
        case "t", "d", "P", "p": return "making \(target)"
        case "o": return "making \(target) read-only"
        default: return "mounting \(source) at \(target)"
        }
    }
}
