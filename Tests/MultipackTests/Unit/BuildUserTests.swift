import Foundation
import Glibc
import Testing

@testable import MultipackKit

/// SPEC §15, "Not root, for real": which id a root caller's build runs as, and what stops it.
@Suite struct BuildUserTests {
    /// An /etc of the test's own: subuid, subgid, passwd and group as given.
    private func etc(_ files: [String: String]) throws -> TempDir {
        let temp = try TempDir("etc")
        for (name, text) in files { try temp.write(name, text) }
        return temp
    }

    private let everything = [BuildUser.IDRange(inside: 0, outside: 0, count: 4_294_967_295)]

    @Test func rootsFirstSubordinateIDIsTheBuildsUser() throws {
        let temp = try etc([
            "subuid": "alice:100000:65536\nroot:200000:65536\n", "passwd": "root:x:0:0::/root:/bin/sh\n",
        ])
        let id = try BuildUser.chosen(
            subordinate: temp.path + "/subuid", names: temp.path + "/passwd", kind: "uid", map: everything)
        #expect(id == 200000)
        // A range given by uid (`0:…`) counts as root's too.
        try temp.write("subuid", "0:300000:10\n")
        #expect(
            try BuildUser.chosen(
                subordinate: temp.path + "/subuid", names: temp.path + "/passwd", kind: "uid", map: everything)
                == 300000)
    }

    @Test func withoutARangeTheFallbackIDIsUsed() throws {
        let temp = try etc(["passwd": "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"])
        let id = try BuildUser.chosen(
            subordinate: temp.path + "/subuid", names: temp.path + "/passwd", kind: "uid", map: everything)
        #expect(id == BuildUser.fallbackID)
        #expect(id != 0 && id != 65534)
    }

    @Test func anIDSomeoneHasIsRefusedWithTheWayOut() throws {
        let temp = try etc([
            "subuid": "root:1000:10\n", "passwd": "root:x:0:0::/root:/bin/sh\ndev:x:1000:1000::/home/dev:/bin/sh\n",
        ])
        #expect {
            try BuildUser.chosen(
                subordinate: temp.path + "/subuid", names: temp.path + "/passwd", kind: "uid", map: everything)
        } throws: { error in
            let failure = try #require(error as? MultipackError)
            return failure.headline.contains("1000") && failure.headline.contains("`dev`")
                && failure.hint?.contains("subuid") == true
        }
        try temp.write("passwd", "root:x:0:0::/root:/bin/sh\nthief:x:\(BuildUser.fallbackID):1::/:/bin/sh\n")
        try temp.write("subuid", "")
        #expect(throws: MultipackError.self) {
            try BuildUser.chosen(
                subordinate: temp.path + "/subuid", names: temp.path + "/passwd", kind: "uid", map: everything)
        }
    }

    /// Inside `unshare -Ur` by root only root is mapped: no id that owns nothing can be had.
    @Test func aNamespaceThatMapsOnlyRootIsRefused() throws {
        let temp = try etc(["passwd": "root:x:0:0::/root:/bin/sh\n"])
        let onlyRoot = BuildUser.parseMap("         0          0          1\n")
        #expect(BuildUser.mapsRootToRoot(onlyRoot))
        #expect(throws: MultipackError.self) {
            try BuildUser.chosen(
                subordinate: temp.path + "/subuid", names: temp.path + "/passwd", kind: "uid", map: onlyRoot)
        }
    }

    @Test func rootThatIsSomeoneElseOutsideIsAnOrdinaryCaller() {
        // A rootless container: root inside is uid 1000 outside.
        #expect(!BuildUser.mapsRootToRoot(BuildUser.parseMap("0 1000 1\n1 100000 65536\n")))
        #expect(BuildUser.mapsRootToRoot(BuildUser.parseMap("0 0 4294967295\n")))
    }

    @Test func aClosedDirectoryOnThePathIsNamed() throws {
        let temp = try TempDir("closed")
        let inner = temp.sub("open/closed/inner")
        chmod(temp.path, 0o755)
        chmod(temp.path + "/open", 0o755)
        chmod(temp.path + "/open/closed", 0o700)
        let stranger = BuildUser(uid: 65533, gid: 65533, callerUID: getuid(), callerGID: getgid())
        #expect(stranger.firstClosedDirectory(on: inner) == temp.path + "/open/closed")
        chmod(temp.path + "/open/closed", 0o711)
        #expect(stranger.firstClosedDirectory(on: inner) == nil)
    }
}

/// What multipack says when a machine refuses the build's namespace (SPEC §15).
@Suite struct NamespaceDiagnosisTests {
    private func diagnose(_ files: [String: String], root: Bool = false) -> NamespaceDiagnosis? {
        NamespaceDiagnosis.current(root: root) { files[$0] }
    }

    @Test func ubuntusAppArmorRestrictionIsNamedWithItsFixes() throws {
        let found = try #require(
            diagnose([
                "/proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1\n", "/proc/self/status": "Seccomp:\t0\n",
            ]))
        #expect(found.cause.contains("AppArmor") && found.cause.contains("apparmor_restrict_unprivileged_userns"))
        #expect(found.fix.contains("/etc/apparmor.d/multipack") && found.fix.contains("userns,"))
        #expect(found.fix.contains("sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"))
        #expect(found.fix.contains("MULTIPACK_SANDBOX=off"))
        // Root is not restricted by it.
        #expect(diagnose(["/proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1\n"], root: true) == nil)
    }

    @Test func aContainersSeccompFilterAndMissingCapabilityAreNamed() throws {
        let seccomp = try #require(diagnose(["/proc/self/status": "Name:\tx\nSeccomp:\t2\nCapEff:\t0\n"]))
        #expect(seccomp.cause.contains("seccomp") && seccomp.fix.contains("seccomp=unconfined"))
        let capability = try #require(
            diagnose(["/proc/self/status": "Seccomp:\t0\nCapEff:\t00000000a80425fb\n"], root: true))
        #expect(capability.cause.contains("CAP_SYS_ADMIN") && capability.fix.contains("--cap-add SYS_ADMIN"))
    }

    @Test func debiansSwitchAndAZeroLimitAreNamed() throws {
        #expect(
            diagnose(["/proc/sys/kernel/unprivileged_userns_clone": "0"])?.fix.contains("unprivileged_userns_clone=1")
                == true)
        #expect(diagnose(["/proc/sys/user/max_user_namespaces": "0"])?.cause.contains("max_user_namespaces") == true)
        #expect(diagnose(["/proc/self/status": "Seccomp:\t0\nCapEff:\t000001ffffffffff\n"], root: true) == nil)
    }
}

/// The walk that hands a tree back: every entry, whatever its depth or name.
@Suite struct HandBackWalkTests {
    @Test func aTreeDeeperThanAPathMayBeIsWalkedWhole() throws {
        let temp = try TempDir("deep")
        let root = temp.path + "/tree"
        mkdir(root, 0o755)
        // 600 levels of 20-byte names: 12,000 bytes of path, three times PATH_MAX.
        var fd = open(root, O_RDONLY | O_DIRECTORY)
        let name = String(repeating: "d", count: 20)
        for _ in 0..<600 {
            #expect(mkdirat(fd, name, 0o755) == 0)
            let next = openat(fd, name, O_RDONLY | O_DIRECTORY)
            close(fd)
            fd = next
        }
        // A file whose name is not UTF-8, at the bottom.
        let bytes: [CChar] = [0x66, CChar(bitPattern: 0xFF), 0x66, 0]
        let file = openat(fd, bytes, O_WRONLY | O_CREAT, 0o644)
        close(file)
        close(fd)
        var directories = 0
        var files = 0
        TreeWalk.visit(root) { _, name, info in
            if info.st_mode & S_IFMT == S_IFDIR { directories += 1 }
            if info.st_mode & S_IFMT == S_IFREG, name == bytes { files += 1 }
        }
        #expect(directories == 601)
        #expect(files == 1)
        // The temp dir's removal needs no path that long either.
        _ = try Shell.run("rm", ["-rf", root])
    }

    @Test(.enabled(if: getuid() == 0)) func handingBackGivesTheCallerEverythingAndDropsSetuidBits() throws {
        let temp = try TempDir("handback")
        let root = temp.sub("tree")
        try temp.write("tree/sub/tool", "#!/bin/sh\n")
        try temp.write("tree/idmapped", "x")
        chmod(root + "/sub/tool", 0o6755)
        chmod(root + "/idmapped", 0o4755)
        let user = BuildUser(uid: 65533, gid: 65533, callerUID: 0, callerGID: 0)
        for path in [root, root + "/sub", root + "/sub/tool"] { chown(path, 65533, 65533) }
        Handover.handBack(root, from: user)
        for path in [root, root + "/sub", root + "/sub/tool", root + "/idmapped"] {
            var info = stat()
            #expect(lstat(path, &info) == 0)
            #expect(info.st_uid == 0 && info.st_gid == 0, "\(path)")
            if info.st_mode & S_IFMT == S_IFREG { #expect(info.st_mode & 0o6000 == 0, "\(path)") }
        }
    }
}
