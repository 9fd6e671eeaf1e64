import FoundationEssentials

/// `multipack report APP_DIR`: the report of the app's last successful local build (SPEC §12),
/// the flat YAML `bin/report` printed for it, with which build it was and its slug. `bin/report`
/// itself is `Report`.
public enum LocalReport {
    public static func run(appDir: String, environment: [String: String]) throws -> String {
        let appDir = Files.absolute(appDir)
        let kept = LocalState.App(appDir: appDir, environment: environment).kept
        guard let report = try? Files.read(kept.report) else {
            throw MultipackError.build(
                "\(appDir) has no local build to report on: multipack keeps the last successful build of each app, "
                    + "and there is none (never built, no build succeeded yet, or its cache was purged).",
                hint: "Build it first: \(CommandName.line(["build", appDir]))")
        }
        var text = report
        if !text.isEmpty && !text.hasSuffix("\n") { text += "\n" }
        if let id = try? Files.read(kept.buildID) {
            let words = id.trimmingCharacters("\n").split(separator: " ")
            if let name = words.first { text += "local_build: \(YAML.quoted(String(name)))\n" }
            if words.count > 1 { text += "local_build_time: \(YAML.quoted(String(words[1])))\n" }
        }
        text += "local_build_directory: \(YAML.quoted(kept.build))\n"
        text += keptRoot(kept)?.yaml ?? ""
        if let slug = kept.slugLocation {
            text += "slug: \(YAML.quoted(slug))\n"
            if let bytes = Files.size(slug) { text += "slug_bytes: \(bytes)\n" }
        }
        return text
    }

    /// What a kept build stood on, when it says.
    static func keptRoot(_ kept: LocalState.Kept) -> BuildRoot.Record? {
        (try? Files.readRegularFile(kept.root, limit: 64 << 10)).flatMap {
            try? JSONDecoder().decode(BuildRoot.Record.self, from: Data($0))
        }
    }
}
