import Glibc

/// Why this machine refuses the namespace a local build needs, as far as the kernel's settings and
/// this process's status say, and what fixes it (SPEC §15): Ubuntu's AppArmor restriction,
/// Debian's old switch, a zero namespace limit, a container's seccomp filter or missing capability.
struct NamespaceDiagnosis: Equatable {
    var cause: String
    var fix: String

    /// `read` gives a /proc file's text (nil when it is not there), so tests can give others.
    static func current(root: Bool = getuid() == 0, read: (String) -> String? = { try? Files.read($0) })
        -> NamespaceDiagnosis?
    {
        func number(_ path: String) -> Int? { read(path).flatMap { Int($0.trimmingCharacters("\n", " ")) } }
        let status = read("/proc/self/status") ?? ""
        func field(_ name: String) -> String? {
            status.split(separator: "\n").first { $0.hasPrefix(name + ":") }.map {
                String($0.dropFirst(name.count + 1)).trimmingCharacters(" ", "\t")
            }
        }
        let off = "or set MULTIPACK_SANDBOX=off to build without namespaces"
        if number("/proc/sys/user/max_user_namespaces") == 0 {
            return NamespaceDiagnosis(
                cause: "user namespaces are disabled (user.max_user_namespaces is 0)",
                fix:
                    "Allow them: sudo sysctl -w user.max_user_namespaces=15000 (and in /etc/sysctl.d to keep it), \(off)."
            )
        }
        if !root, number("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == 1 {
            return NamespaceDiagnosis(
                cause:
                    "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns is 1, as on Ubuntu 23.10 and later)",
                fix:
                    "Give multipack an AppArmor profile that allows them: a file /etc/apparmor.d/multipack holding "
                    + "`abi <abi/4.0>, include <tunables/global> profile multipack /path/to/multipack flags=(unconfined) { userns, }`, "
                    + "then sudo apparmor_parser -r /etc/apparmor.d/multipack; or install Ubuntu's bubblewrap, whose profile "
                    + "allows them; or lift the restriction: sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0; \(off)."
            )
        }
        if !root, number("/proc/sys/kernel/unprivileged_userns_clone") == 0 {
            return NamespaceDiagnosis(
                cause: "unprivileged user namespaces are switched off (kernel.unprivileged_userns_clone is 0)",
                fix: "Allow them: sudo sysctl -w kernel.unprivileged_userns_clone=1, \(off).")
        }
        if let seccomp = field("Seccomp"), seccomp == "2" {
            return NamespaceDiagnosis(
                cause:
                    "this process runs under a seccomp filter (a container's default profile, as Docker's and Podman's) that refuses new namespaces",
                fix:
                    "Run the container with a profile that allows unshare and clone with namespace flags (docker run --security-opt seccomp=unconfined), \(off)."
            )
        }
        // CAP_SYS_ADMIN is bit 21: root makes the mount namespace with it (a container drops it).
        if root, let effective = field("CapEff").flatMap({ UInt64($0, radix: 16) }), effective & (1 << 21) == 0 {
            return NamespaceDiagnosis(
                cause: "multipack runs as root without CAP_SYS_ADMIN (a container's default capabilities)",
                fix: "Run the container with --cap-add SYS_ADMIN (and a seccomp profile that allows unshare), \(off).")
        }
        return nil
    }
}
