/// The variables multipack's own processes use to talk to each other. None is for users: a local
/// build starts the same binary once per verb, as Heroku does, and tells it these.
enum HiddenVariable {
    /// Where multipack's buildpack directory is, for a binary that does not sit in `bin/../`.
    static let buildpackDir = "MULTIPACK_BUILDPACK_DIR"
    /// The original app of a local build (relative `.buildpacks` paths are relative to it), since
    /// compile runs on a copy.
    static let appDir = "MULTIPACK_APP_DIR"
    /// Where "GitHub" is, so tests and benchmarks can serve tarballs from loopback.
    static let githubURL = "MULTIPACK_GITHUB_URL"
    /// Where a verb started by a local build writes its failure's lines, so that `--json` can
    /// carry the failure a child process printed.
    static let failureFile = "MULTIPACK_FAILURE_FILE"
    /// How many children are fetched at once, for benchmarks.
    static let fetchParallelism = "MULTIPACK_FETCH_PARALLELISM"
    /// How many seconds without a byte make a download stalled (30 unless set), so tests need not
    /// wait half a minute.
    static let stallSeconds = "MULTIPACK_STALL_SECONDS"
    /// `off` makes local builds and runs do without namespaces, as on a machine that has none;
    /// `bubblewrap` or `direct` (multipack's own unshare) picks the namespace's maker, for tests and
    /// benchmarks. Unset: bubblewrap where installed, else direct.
    static let sandbox = "MULTIPACK_SANDBOX"
    /// How the user started multipack (`CommandName`), for the hints of the verbs a local build
    /// starts inside its namespace, where the binary has another path.
    static let commandName = "MULTIPACK_COMMAND_NAME"

    /// The environment a buildpack, a hook or a test script gets from multipack's own: without any
    /// `MULTIPACK_*`, which is multipack's alone in a process environment (SPEC §15). A user's own
    /// config var of that name still reaches them, through ENV_DIR.
    static func removingOwn(_ environment: [String: String]) -> [String: String] {
        environment.filter { !$0.key.hasPrefix("MULTIPACK_") }
    }
}
