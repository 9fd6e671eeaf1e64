/// Measures BUILD_DIR between the steps of a build, so each child and hook is charged with what it
/// added (SPEC §14). Off (`MULTIPACK_SIZES=0`), it measures nothing and every growth is nil.
struct SizeMeter {
    var root: String
    var enabled: Bool
    var clock: any BuildClock
    private(set) var last: TreeSize?
    /// Time spent walking, for the report and the benchmark.
    private(set) var seconds = 0.0

    init(root: String, enabled: Bool, clock: any BuildClock = SystemClock()) {
        self.root = root
        self.enabled = enabled
        self.clock = clock
        if enabled { last = measure() }
    }

    /// Walks the tree now.
    mutating func measure() -> TreeSize {
        let start = clock.now
        defer { seconds += (clock.now - start).seconds }
        return TreeWalk.measure(root)
    }

    /// What the tree gained since the last measure.
    mutating func growth() -> TreeSize? {
        guard enabled, let before = last else { return nil }
        let now = measure()
        last = now
        return now - before
    }

    /// Takes a removal (by `.slugfilter`) into account without walking again.
    mutating func subtract(_ removed: TreeSize) {
        last = last.map { $0 - removed }
    }
}
