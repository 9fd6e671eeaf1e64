/// `multipack run [--stack-image REF | --stack-root DIR] [--mount …] -- COMMAND` with no app (SPEC §19): the command
/// runs in a dyno's namespace on the stack's build image, with an empty writable `/app` (so that
/// `./configure --prefix=/app/vendor/x` builds what runs where slugs run), `HOME=/app`, as the
/// build's user; only `--mount` directories carry files out.
extension LocalRun {
    static let nothingToRun = MultipackError.usage(
        "multipack run needs an app, a slug, or a command after --.",
        hint: "\(CommandName.line(["run", "APP_DIR", "web"])), or on the stack's build image with no app: "
            + "\(CommandName.line(["run", "--mount", "./out:/output", "--", "bash"]))")

    /// An empty `/app`, nothing to source, no config vars but `-e`'s.
    func emptyApp(scratch: String) throws -> Source {
        let home = scratch + "/app"
        try Files.makeDirectory(home)
        log.step(
            "No app: /app is empty and writable; files written there stay inside, --mount directories carry results out"
        )
        return Source(home: home, release: Release(), buildConfig: [], dotenv: nil)
    }

    /// What needs a namespace, where this machine gives none: bad input, said before anything runs.
    static func needNamespace(_ unavailable: Sandbox.Unavailable, for what: String) -> MultipackError {
        MultipackError.usage(
            "\(what) needs a namespace, and this machine gives none: \(unavailable.reason).",
            hint: "Install bubblewrap (apt-get install bubblewrap) and allow user namespaces.")
    }
}
