/// Measures BUILD_DIR between the steps of a build, so each child and hook is charged with what it
/// added (SPEC §14). Off (`MULTIPACK_SIZES=0`), it measures nothing and every growth is nil.
struct SizeMeter {
    var root: String
    var enabled: Bool
    private(set) var last: TreeSize?

    init(root: String, enabled: Bool) {
        self.root = root
        self.enabled = enabled
        if enabled { last = TreeWalk.measure(root) }
    }

    /// What the tree gained since the last measure.
    mutating func growth() -> TreeSize? {
        guard enabled, let before = last else { return nil }
        let now = TreeWalk.measure(root)
        last = now
        return now - before
    }

    /// Takes a removal (by `.slugfilter`) into account without walking again.
    mutating func subtract(_ removed: TreeSize) {
        last = last.map { $0 - removed }
    }
}
