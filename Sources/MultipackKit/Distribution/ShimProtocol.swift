/// What the `bin/` shims ask of the binary: the verbs and their arguments, and the variables they
/// set. They say which protocol they speak in `MULTIPACK_SHIM_PROTOCOL` as `N@VERSION`, VERSION
/// being the first release that speaks N, so that a binary older than its shims (the default
/// branch names the last release's binary, SPEC §16) says which release to use instead of
/// misreading them.
public enum ShimProtocol {
    public static let variable = "MULTIPACK_SHIM_PROTOCOL"
    /// The protocols this binary speaks.
    static let known: Set<Int> = [1]
    /// What a local build tells the verbs it starts, as the shims would.
    static let spoken = "1"

    /// Whether the shims started this process (and so `report` is `bin/report`, which never fails).
    public static func isShim(_ environment: [String: String]) -> Bool {
        environment[variable].map { !$0.isEmpty } ?? false
    }

    /// The failure to print when the shims speak a protocol this binary does not know; nil otherwise.
    /// The version is read only then (every shim call asks).
    public static func problem(_ environment: [String: String], version: @autoclosure () -> MultipackVersion)
        -> MultipackError?
    {
        guard let value = environment[variable], !value.isEmpty else { return nil }
        let parts = value.split(separator: "@", maxSplits: 1).map(String.init)
        if let number = Int(parts[0]), known.contains(number) { return nil }
        let needed = parts.count > 1 && !parts[1].isEmpty ? parts[1] : nil
        let shown = Masking.text(String(parts[0].prefix(20)))
        return MultipackError.build(
            "This buildpack's bin/ scripts speak shim protocol \(shown), which multipack \(version()) does not know.",
            details: [
                "The scripts come from a newer multipack than the binary buildpack.toml names."
            ],
            hint: "Use multipack \(needed.map { "\($0) or later" } ?? "from the same release as the scripts"): "
                + "deploy a release tag (https://github.com/multipack/multipack#v\(needed ?? "<version>")) or its "
                + "archive, whose scripts and binary match, or cut a release with scripts/release.sh so that "
                + "buildpack.toml names a binary that speaks it.")
    }
}
