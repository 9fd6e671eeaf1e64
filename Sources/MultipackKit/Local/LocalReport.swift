import FoundationEssentials

/// `multipack report APP_DIR`: the report of the app's last local build (SPEC §12), the flat YAML
/// `bin/report` printed for it, with the slug's path. `bin/report` itself is `Report`.
public enum LocalReport {
    public static func run(appDir: String, environment: [String: String]) throws -> String {
        let appDir = Files.absolute(appDir)
        let state = LocalState.App(appDir: appDir, environment: environment)
        guard let report = try? Files.read(state.report) else {
            throw MultipackError.build(
                "\(appDir) has no local build to report on: multipack keeps the last successful build of each app, "
                    + "and there is none (never built, the last build failed, or its cache was purged).",
                hint: "Build it first: \(CommandName.line(["build", appDir]))")
        }
        let root = keptRoot(state).map(\.yaml) ?? ""
        guard Files.isRegularFile(state.slug) else { return report + root }
        return report + root + "slug: \(YAML.quoted(state.slug))\n"
    }

    /// What the app's last build stood on, when it says.
    static func keptRoot(_ state: LocalState.App) -> BuildRoot.Record? {
        (try? Files.readRegularFile(state.root, limit: 64 << 10)).flatMap {
            try? JSONDecoder().decode(BuildRoot.Record.self, from: Data($0))
        }
    }
}
