import Glibc

/// A root caller's directories as the build's user reaches them (SPEC §15): through idmapped
/// mounts, where nothing changes hands, or handed to that user for the build and back to the
/// caller after, whatever the outcome. Either way, what the build leaves there is checked once it
/// ended: nothing setuid or setgid stays (through an idmapped mount, a file the build makes is
/// root's on disk). A marker in the app's state lists what is out, so that what a SIGKILLed build
/// left is handed back by the next one.
struct Handover {
    var user: BuildUser
    /// Directories chowned to the build's user for the build.
    var handed: [String] = []
    /// Directories reached through idmapped mounts: only checked afterwards.
    var idmapped: [String] = []
    /// The marker file (in the app's state); nil: none is kept (a run's scratch, removed anyway).
    var marker: String?

    /// Writes the marker, then hands `handed` over.
    static func begin(user: BuildUser, handed: [String], idmapped: [String], marker: String?) throws -> Handover {
        let handover = Handover(user: user, handed: handed, idmapped: idmapped, marker: marker)
        guard user.isIsolated, !(handed.isEmpty && idmapped.isEmpty) else { return handover }
        if let marker {
            let lines = ["\(user.uid) \(user.gid) \(user.callerUID) \(user.callerGID)"] + handed + idmapped
            try Files.write(lines.joined(separator: "\n") + "\n", to: marker, mode: 0o600)
        }
        for path in handed {
            TreeWalk.visit(path) { directory, name, info in
                guard info.st_uid == user.callerUID else { return }
                fchownat(directory, name, user.uid, user.gid, AT_SYMLINK_NOFOLLOW)
            }
        }
        return handover
    }

    /// Runs `body` (the build), then hands everything back, whatever the outcome.
    func during<T>(_ body: () throws -> T) rethrows -> T {
        defer { end() }
        return try body()
    }

    /// Hands everything back: what the build's user owns goes to the caller, setuid and setgid
    /// bits go from files. Then the marker goes.
    func end() {
        guard user.isIsolated else { return }
        for path in handed + idmapped { Self.handBack(path, from: user) }
        if let marker { Files.remove(marker) }
    }

    /// What a build that was killed left handed over (its marker is still there) goes back.
    /// `within`: the app's state directory, where the build's directories were moved since.
    static func recover(marker: String, within state: String) {
        guard let text = try? Files.read(marker) else { return }
        let lines = text.split(separator: "\n").map(String.init)
        let ids = (lines.first ?? "").split(separator: " ").compactMap { UInt32($0) }
        guard ids.count == 4 else {
            Files.remove(marker)
            return
        }
        let user = BuildUser(uid: ids[0], gid: ids[1], callerUID: ids[2], callerGID: ids[3])
        for path in [state] + lines.dropFirst() where !path.hasPrefix(state + "/") && Files.exists(path) {
            handBack(path, from: user)
        }
        Files.remove(marker)
    }

    static func handBack(_ path: String, from user: BuildUser) {
        TreeWalk.visit(path) { directory, name, info in
            if info.st_uid == user.uid || info.st_gid == user.gid {
                // The kernel clears setuid (and group-executable setgid) bits of a file it chowns.
                fchownat(
                    directory, name, info.st_uid == user.uid ? user.callerUID : UInt32.max,
                    info.st_gid == user.gid ? user.callerGID : UInt32.max, AT_SYMLINK_NOFOLLOW)
            }
            if info.st_mode & S_IFMT == S_IFREG, info.st_mode & (S_ISUID | S_ISGID) != 0 {
                // Through a descriptor of this very file: a name swapped for a link since is
                // not followed to another.
                let file = openat(directory, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
                guard file >= 0 else { return }
                defer { close(file) }
                var now = stat()
                guard fstat(file, &now) == 0, now.st_ino == info.st_ino, now.st_dev == info.st_dev else { return }
                fchmod(file, now.st_mode & 0o1777)
            }
        }
    }
}

extension TreeWalk {
    /// `visit(directory, name, info)` for `root` itself (relative to its parent) and every entry
    /// under it, a directory before its contents, without following links, whatever the depth:
    /// one directory open at a time, and the way back up by its `..`, which must be the directory
    /// it came down from (a directory moved meanwhile ends the walk there). Names are the bytes
    /// on disk: one that is no UTF-8 is visited too.
    static func visit(_ root: String, _ visit: (Int32, [CChar], stat) -> Void) {
        let slash = root.lastIndex(of: "/") ?? root.startIndex
        let parentPath = slash == root.startIndex ? "/" : String(root[..<slash])
        let rootName = Array(String(root[root.index(after: slash)...]).utf8CString)
        let parent = open(parentPath, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard parent >= 0 else { return }
        var info = stat()
        guard fstatat(parent, rootName, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
            close(parent)
            return
        }
        visit(parent, rootName, info)
        var current =
            info.st_mode & S_IFMT == S_IFDIR
            ? openat(parent, rootName, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1
        close(parent)
        guard current >= 0 else { return }
        // The names still to visit at each level, deepest last, and each level's identity.
        var levels: [[Entry]] = [entries(current)]
        var identities = [(info.st_dev, info.st_ino)]
        while true {
            guard let entry = levels[levels.count - 1].popLast() else {
                levels.removeLast()
                identities.removeLast()
                guard let expected = identities.last else { break }
                let up = openat(current, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                close(current)
                var found = stat()
                guard up >= 0, fstat(up, &found) == 0, (found.st_dev, found.st_ino) == expected else {
                    if up >= 0 { close(up) }
                    return
                }
                current = up
                continue
            }
            var info = stat()
            guard fstatat(current, entry.name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            visit(current, entry.name, info)
            guard info.st_mode & S_IFMT == S_IFDIR else { continue }
            let down = openat(current, entry.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard down >= 0 else { continue }
            var opened = stat()
            guard fstat(down, &opened) == 0 else {
                close(down)
                continue
            }
            close(current)
            current = down
            levels.append(entries(current))
            identities.append((opened.st_dev, opened.st_ino))
        }
        close(current)
    }
}
