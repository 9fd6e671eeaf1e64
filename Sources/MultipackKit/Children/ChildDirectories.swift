import CMultipackSys
import Glibc

/// Where the children are fetched to (SPEC §5): a private scratch directory outside BUILD_DIR,
/// removed when the build ends whatever the outcome, or, for test-compile, the BUILD_DIR's state,
/// kept for `bin/test`. A finished child's own directory goes once no variable of the build names
/// it (an export that puts its `bin/` on PATH keeps it). Removals run on the build's trash thread.
struct ChildDirectories {
    let path: String
    private let scratch: ScratchDirectory?
    /// The scratch directory without symlinks, as `pwd -P` shows it to a child when TMPDIR has one.
    private let physicalPath: String
    private let trash: SerialWork

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
        physicalPath =
            realpath(path, nil).map { path in
                defer { free(path) }
                return String(cString: path)
            } ?? path
    }

    /// Called once the child's release is done, with the environment its export made.
    func childFinished(_ directory: String, environment: [String: String]) {
        guard scratch != nil, directory.hasPrefix(path + "/") else { return }
        let names = [directory, physicalPath + directory.dropFirst(path.count)]
        guard !environment.values.contains(where: { value in names.contains { Self.contains(value, $0) } }) else {
            return
        }
        trash.add { Files.remove(directory) }
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

    /// Removes the scratch directory and everything left in it, on the trash thread.
    func removeAll() {
        guard let scratch else { return }
        trash.add { scratch.remove() }
    }
}
