import Synchronization

/// Where the children are fetched to (SPEC §5): a private scratch directory outside BUILD_DIR,
/// or, for test-compile, the BUILD_DIR's state, kept for `bin/test`. Every child's directory stays
/// until the last child and hook have run, as on Heroku: a later child, or a process a child
/// started, may still read what an earlier one keeps there. The scratch directory then goes on
/// the build's trash thread, while the slug and the release are made.
final class ChildDirectories: Sendable {
    let path: String
    private let scratch: ScratchDirectory?
    private let trash: SerialWork
    private let removed = Atomic<Bool>(false)

    /// A fresh scratch directory in TMPDIR, or `kept` when given.
    init(kept: String?, trash: SerialWork) throws {
        self.trash = trash
        if let kept {
            scratch = nil
            path = kept
            try Files.makeDirectory(kept)
        } else {
            let scratch = try ScratchDirectory(.children)
            self.scratch = scratch
            path = scratch.path
        }
    }

    /// Removes the scratch directory and everything in it, on the trash thread; again does nothing.
    func removeAll() {
        guard let scratch, !removed.exchange(true, ordering: .relaxed) else { return }
        trash.add { scratch.remove() }
    }
}
