import CMultipackSpawn
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
    /// Private directories of multipack's (the app's state, 0700) the build's user is let
    /// through for the build, and their modes: an ACL entry for that user alone.
    var passages: [(path: String, mode: mode_t)] = []
    /// The marker file (in the app's state); nil: none is kept (a run's scratch, removed anyway).
    var marker: String?

    /// Writes the marker, opens the passages, then hands `handed` over.
    static func begin(
        user: BuildUser, handed: [String], idmapped: [String], passages: [String] = [], marker: String?
    ) throws -> Handover {
        var handover = Handover(user: user, handed: handed, idmapped: idmapped, marker: marker)
        guard user.isIsolated, !(handed.isEmpty && idmapped.isEmpty) else { return handover }
        for path in passages {
            var info = stat()
            guard stat(path, &info) == 0 else { continue }
            handover.passages.append((path, info.st_mode & 0o7777))
        }
        if let marker {
            let lines =
                ["\(user.uid) \(user.gid) \(user.callerUID) \(user.callerGID)"]
                + handover.passages.map { "pass \(String($0.mode, radix: 8)) \($0.path)" } + handed.map { "hand " + $0 }
                + idmapped.map { "idmap " + $0 }
            try Files.write(lines.joined(separator: "\n") + "\n", to: marker, mode: 0o600)
        }
        for passage in handover.passages {
            guard Self.openPassage(passage.path, user.uid, mode: passage.mode) else {
                throw MultipackError.build(
                    "Could not let the build's user (uid \(user.uid)) through \(passage.path): \(String(cString: strerror(errno))).",
                    hint:
                        "Keep multipack's state on a file system with POSIX ACLs (ext4, xfs, btrfs, tmpfs), or allow namespaces."
                )
            }
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
    /// bits go from files, the passages close. Then the marker goes.
    func end() {
        guard user.isIsolated else { return }
        for path in handed + idmapped { Self.handBack(path, from: user) }
        for passage in passages { Self.closePassage(passage.path, mode: passage.mode) }
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
        var paths = [state]
        for line in lines.dropFirst() {
            let fields = line.split(separator: " ", maxSplits: 2).map(String.init)
            if fields.count == 3, fields[0] == "pass", let mode = mode_t(fields[1], radix: 8) {
                closePassage(fields[2], mode: mode)
            } else if fields.count >= 2, fields[0] == "hand" || fields[0] == "idmap" {
                let path = line.dropFirst(fields[0].count + 1)
                if !path.hasPrefix(state + "/") { paths.append(String(path)) }
            }
        }
        for path in paths where Files.exists(path) { handBack(path, from: user) }
        Files.remove(marker)
    }

    /// Lets `uid` alone through `directory` (search, not read) with a POSIX ACL entry: the app's
    /// state is private (0700, it holds config vars), and without namespaces the build's user
    /// must reach its directories in it. False (errno set) where the file system has no ACLs.
    static func openPassage(_ directory: String, _ uid: uid_t, mode: mode_t) -> Bool {
        // system.posix_acl_access, version 2: user::, user:uid:--x, group::, mask::--x, other::.
        let undefined = UInt32.max
        let entries: [(tag: UInt16, permissions: UInt16, id: UInt32)] = [
            (0x01, UInt16((mode >> 6) & 7), undefined), (0x02, 1, uid), (0x04, UInt16((mode >> 3) & 7), undefined),
            (0x10, UInt16(((mode >> 3) & 7) | 1), undefined), (0x20, UInt16(mode & 7), undefined),
        ]
        var bytes: [UInt8] = [2, 0, 0, 0]
        for entry in entries {
            bytes += withUnsafeBytes(of: entry.tag.littleEndian, Array.init)
            bytes += withUnsafeBytes(of: entry.permissions.littleEndian, Array.init)
            bytes += withUnsafeBytes(of: entry.id.littleEndian, Array.init)
        }
        return multipack_set_access_acl(directory, bytes, bytes.count) == 0
    }

    /// Takes the ACL entry away and gives the directory its mode back.
    static func closePassage(_ directory: String, mode: mode_t) {
        multipack_remove_access_acl(directory)
        chmod(directory, mode)
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
