import Glibc

/// A git repository on this machine, read from its files for the one question a warm build asks
/// of it: the commit HEAD names. That saves starting a git process per local child (a third of a
/// warm build's time with ten of them); git is asked whenever the layout is not the plain one.
enum LocalRepository {
    /// The commit HEAD points at, for a repository with a `.git` directory or a bare one whose
    /// HEAD names a loose or packed ref (or a commit). Nil for anything else: a worktree's `.git`
    /// file, reftable, SHA-256 objects, a branch with no commit yet.
    static func head(of repository: String) -> String? {
        let dotGit = repository + "/.git"
        let gitDir = CacheStore.isRealDirectory(dotGit) ? dotGit : repository
        // A linked worktree's refs live elsewhere; reftable keeps none in files.
        guard Files.isRegularFile(gitDir + "/HEAD"), CacheStore.isRealDirectory(gitDir + "/objects"),
            !Files.lexists(gitDir + "/commondir"), !Files.lexists(gitDir + "/reftable")
        else { return nil }
        var name = "HEAD"
        // HEAD may name a ref that names another (a symbolic ref); git follows five levels.
        for _ in 0..<5 {
            guard let value = value(of: name, in: gitDir) else { return nil }
            guard value.hasPrefix("ref: ") else { return CacheStore.isCommit(value) ? value : nil }
            name = String(value.dropFirst(5))
            guard name.hasPrefix("refs/"), !name.split(separator: "/").contains(where: { $0 == ".." || $0 == "." })
            else { return nil }
        }
        return nil
    }

    /// What a ref holds: its loose file, or else its line in `packed-refs`.
    private static func value(of name: String, in gitDir: String) -> String? {
        if let text = CacheStore.readRecord(gitDir + "/" + name) {
            return text.trimmingCharacters("\n", " ")
        }
        guard name.hasPrefix("refs/"), let packed = CacheStore.readRecord(gitDir + "/packed-refs") else { return nil }
        for line in packed.split(separator: "\n") where line.hasSuffix(" " + name) {
            return String(line.dropLast(name.utf8.count + 1))
        }
        return nil
    }
}
