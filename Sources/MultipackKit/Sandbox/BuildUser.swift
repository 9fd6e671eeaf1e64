import Glibc

/// Who a local build's buildpacks, hooks and commands run as (SPEC §15, "Not root, for real"):
/// uid and gid 1000 inside the namespace, as on Heroku. Outside, that is the caller, unless the
/// caller is root: then it is an id that owns nothing, so that no buildpack has root's file access.
public struct BuildUser: Sendable, Equatable {
    /// The ids outside, on this machine.
    public var uid: uid_t
    public var gid: gid_t
    /// The caller's own ids, whose files the build works on.
    public var callerUID: uid_t
    public var callerGID: gid_t

    /// The ids inside a namespace (`heroku` in Heroku's images).
    static let insideUID: uid_t = 1000
    static let insideGID: gid_t = 1000

    /// The id a root caller's build runs as when root has no range in /etc/subuid (/etc/subgid):
    /// outside the ranges useradd hands out (from 100000) and systemd's dynamic users
    /// (61184–65519), below 65536 so that a container's user namespace maps it, and checked
    /// against /etc/passwd and /etc/group.
    public static let fallbackID: UInt32 = 65533

    /// Whether the build runs as someone other than the caller (root's builds): the caller's
    /// directories then reach it through idmapped mounts, or are handed over for the build.
    public var isIsolated: Bool { uid != callerUID }

    /// The build's user for this process: the caller itself, or for root the first id of root's
    /// /etc/subuid range (/etc/subgid for the gid), else `fallbackID`. Never 0, never an id
    /// /etc/passwd (or /etc/group) names.
    public static func current(etc: String = "/etc") throws -> BuildUser {
        let uid = getuid()
        let gid = getgid()
        // Root in a user namespace whose root is an ordinary user outside (rootless containers)
        // has that user's file access only: its builds are an ordinary caller's.
        guard uid == 0, mapsRootToRoot(readUIDMap()) else {
            return BuildUser(uid: uid, gid: gid, callerUID: uid, callerGID: gid)
        }
        let chosenUID = try chosen(
            subordinate: "\(etc)/subuid", names: "\(etc)/passwd", kind: "uid", map: readUIDMap())
        let chosenGID = try chosen(
            subordinate: "\(etc)/subgid", names: "\(etc)/group", kind: "gid", map: readMap("/proc/self/gid_map"))
        return BuildUser(uid: chosenUID, gid: chosenGID, callerUID: uid, callerGID: gid)
    }

    /// The first id of root's range in `subordinate`, else the fallback; refused when a user or
    /// group has it, or when this process's user namespace cannot map it.
    static func chosen(subordinate: String, names: String, kind: String, map: [IDRange]) throws -> UInt32 {
        let ranged = firstSubordinateID(of: ["root", "0"], in: (try? Files.read(subordinate)) ?? "")
        let id = ranged ?? fallbackID
        let source = ranged != nil ? "the first id of root's range in \(subordinate)" : "multipack's fallback id"
        if let owner = owner(of: id, in: (try? Files.read(names)) ?? "") {
            throw MultipackError.build(
                "A build run by root needs a \(kind) that owns nothing, and \(id) (\(source)) belongs to `\(owner)` in \(names).",
                hint: ranged != nil
                    ? "Give root a range no user or group has in \(subordinate) (usermod --add-subuids/--add-subgids)."
                    : "Give root a range of its own: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 root"
            )
        }
        guard map.contains(where: { $0.contains(id) }) else {
            throw MultipackError.build(
                "A build run by root needs a \(kind) that owns nothing, and this user namespace maps none but root's own"
                    + " (\(id), \(source), is not in /proc/self/\(kind)_map).",
                hint: "Run multipack as an ordinary user, or in a user namespace that maps a range of ids (newuidmap).")
        }
        return id
    }

    /// `name:start:count` lines: the start of the first range whose name is one of `names`.
    static func firstSubordinateID(of names: [String], in text: String) -> UInt32? {
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            guard fields.count >= 3, names.contains(String(fields[0])), let start = UInt32(fields[1]),
                let count = UInt32(fields[2]), count > 0, start > 0
            else { continue }
            return start
        }
        return nil
    }

    /// The name /etc/passwd or /etc/group gives `id` (its third field), if any.
    static func owner(of id: UInt32, in text: String) -> String? {
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            if fields.count >= 3, UInt32(fields[2]) == id { return String(fields[0]) }
        }
        return nil
    }

    /// The first directory on `path` (the path itself included, when it is one) that this user
    /// may not pass through, by its mode bits (those in `open` aside); nil when every one lets it.
    func firstClosedDirectory(on path: String, open: [String] = []) -> String? {
        var prefix = ""
        for part in [""] + path.split(separator: "/").map(String.init) {
            prefix = part.isEmpty ? "/" : (prefix == "/" ? "" : prefix) + "/" + part
            if open.contains(prefix) { continue }
            var info = stat()
            guard stat(prefix, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { continue }
            let bit: mode_t = info.st_uid == uid ? S_IXUSR : info.st_gid == gid ? S_IXGRP : S_IXOTH
            if info.st_mode & bit == 0 { return prefix }
        }
        return nil
    }

    /// One line of a uid_map or gid_map: `count` ids from `inside` are `outside` in the parent
    /// namespace.
    struct IDRange: Equatable {
        var inside: UInt32
        var outside: UInt32
        var count: UInt32
        func contains(_ id: UInt32) -> Bool { id >= inside && UInt64(id) < UInt64(inside) + UInt64(count) }
    }

    static func readUIDMap() -> [IDRange] { readMap("/proc/self/uid_map") }

    static func readMap(_ path: String) -> [IDRange] {
        parseMap((try? Files.read(path)) ?? "0 0 4294967295\n")
    }

    static func parseMap(_ text: String) -> [IDRange] {
        text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count == 3, let inside = UInt32(fields[0]), let outside = UInt32(fields[1]),
                let count = UInt32(fields[2])
            else { return nil }
            return IDRange(inside: inside, outside: outside, count: count)
        }
    }

    /// Whether uid 0 here is uid 0 in the parent namespace (the machine's root, as far as this
    /// process can tell), rather than an ordinary user's id mapped to 0.
    static func mapsRootToRoot(_ map: [IDRange]) -> Bool {
        map.contains { $0.contains(0) && $0.outside == 0 }
    }
}
