import FoundationEssentials

/// What `multipack build --json` prints: one object, snake_case keys.
struct LocalBuildSummary: Encodable {
    struct Child: Encodable {
        var position: Int
        var name: String
        /// Masked: credentials never reach the output.
        var url: String
        var version: String
        var source: String
        var fetchSeconds: Double
        var detectSeconds: Double
        var compileSeconds: Double
        var releaseSeconds: Double
        /// BUILD_DIR's growth during the child's turn (absent with `MULTIPACK_SIZES=0`).
        var growth: TreeSize?

        init(_ child: BuildRecord.Child) {
            position = child.position
            name = child.name
            url = Masking.url(child.url)
            version = child.version
            source = child.source
            fetchSeconds = child.fetchSeconds
            detectSeconds = child.detectSeconds
            compileSeconds = child.compileSeconds
            releaseSeconds = child.releaseSeconds
            growth = child.growth
        }
    }

    struct SlugInfo: Encodable {
        var path: String
        var bytes: Int64
        var limitBytes: Int64
    }

    var command: String
    var outcome = "failed"
    /// `.buildpacks.lock`: used or not, how many children pinned, how many floating.
    var lock: BuildRecord.LockState?
    var exitCode: Int32 = 1
    var failure: String?
    var app: String
    var stack: String
    /// What the build stood on: the stack's image (name, digest), a stack root, or this machine.
    var root: BuildRoot.Record?
    var sourceVersion: String?
    /// `bubblewrap` when the children ran in namespaces, `none` on the host.
    var sandbox: String?
    var buildDirectory: String?
    /// nil with `--no-cache`.
    var cache: String?
    var children: [Child] = []
    /// The app's own hooks (`pre_compile`, `post_compile`) when multipack ran them.
    var hookSeconds: [String: Double] = [:]
    var hookGrowth: [String: TreeSize] = [:]
    /// BUILD_DIR after compile and `.slugfilter`.
    var buildDirSize: TreeSize?
    var slugfilterRemoved: TreeSize?
    var processTypes: [String: String] = [:]
    var release: String?
    var report: String?
    var slug: SlugInfo?
    /// A commit's build (SPEC §19): the repository, the ref and commit, the slug filed.
    var commit: Commit?
    var seconds = 0.0

    struct Commit: Encodable {
        /// Masked; nil for a local work tree.
        var repository: String?
        var ref: String?
        var commit: String
        var dirty = false
        /// `--slug-dir`'s files.
        var slugDirectory: SlugFiles?
    }

    init(command: String, app: String, stack: String) {
        self.command = command
        self.app = app
        self.stack = stack
    }

    var json: String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(self) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}

extension LocalBuildSummary {
    /// What the stages recorded about the children, the hooks and BUILD_DIR.
    mutating func add(_ record: BuildRecord?) {
        children = record?.children.map(Child.init) ?? []
        hookSeconds = record?.hookSeconds ?? [:]
        hookGrowth = record?.hookGrowth ?? [:]
        buildDirSize = record?.buildDirSize
        slugfilterRemoved = record?.slugFilterRemoved
        lock = record?.lock
    }
}
