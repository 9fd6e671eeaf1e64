import CMultipackSys
import Glibc

/// The build's private directory of children (SPEC §5), removed as early as nothing can run from
/// it: a child's own directory on another thread once the child is done and no variable of the
/// build names it (an export that puts its `bin/` on PATH keeps it), the rest when the build
/// ends. The later children run meanwhile, so a warm build's end waits for one directory, not all.
struct ChildDirectories {
    let scratch: ScratchDirectory
    /// The scratch directory without symlinks, as `pwd -P` shows it to a child when TMPDIR has one.
    private let physicalPath: String
    private let removals = SerialWork()

    init(_ scratch: ScratchDirectory) {
        self.scratch = scratch
        physicalPath =
            realpath(scratch.path, nil).map { path in
                defer { free(path) }
                return String(cString: path)
            } ?? scratch.path
    }

    /// Called once the child's release is done, with the environment its export made.
    func childFinished(_ directory: String, environment: [String: String]) {
        guard directory.hasPrefix(scratch.path + "/") else { return }
        let names = [directory, physicalPath + directory.dropFirst(scratch.path.count)]
        guard !environment.values.contains(where: { value in names.contains { Self.contains(value, $0) } }) else {
            return
        }
        removals.add { Files.remove(directory) }
    }

    /// Whether `part` occurs in `text`, byte for byte: memmem is linear whatever the variables hold,
    /// and the standard library's `contains`, which compares Characters, took 0.3 ms per child.
    static func contains(_ text: String, _ part: String) -> Bool {
        var text = text
        var part = part
        return text.withUTF8 { haystack in
            part.withUTF8 { needle in
                memmem(haystack.baseAddress, haystack.count, needle.baseAddress, needle.count) != nil
            }
        }
    }

    /// Removes everything left, on another thread: the caller waits on what it returns.
    func removeAll() -> BackgroundWork {
        let removals = self.removals
        let scratch = self.scratch
        return BackgroundWork {
            removals.finish()
            scratch.remove()
        }
    }
}
