/// One step of a build: a value in, a value out, its effects through the context it is handed
/// (SPEC §5–§7). A compile is `ListStage → FetchStage → ChildrenStage (with the hooks) →
/// SlugStage → ReleaseStage → RecordStage`; no stage reaches into another's state.
protocol BuildStage {
    associatedtype Input
    associatedtype Output
    func run(_ input: Input, in context: BuildContext) throws -> Output
}

/// What a compile was asked to do.
struct BuildRequest: Sendable {
    var dirs: BuildDirectories
    /// Where relative `.buildpacks` paths start: the app root (a local build compiles a copy).
    var appDir: String
    /// multipack's own environment.
    var environment: [String: String]
    var testCompile = false
}
