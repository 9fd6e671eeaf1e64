import Glibc

/// A git child: resolved with `git ls-remote`, cloned once, then served from the cache (SPEC §5).
///
/// Cache layout, under CACHE_DIR/.multipack/git/<key of the URL>/:
///   url          the masked URL the entry belongs to (a key collision is detected, never trusted;
///                the URL itself is not stored, since it may hold credentials)
///   <commit>/    the checked-out tree of that commit, without .git
///   ref-<name>   the commit a floating ref resolved to last time (for offline fallback)
struct GitFetch {
    var url: String
    var ref: String?
    var context: FetchContext
    /// The branch or tag a `commit=` pin was locked from (`ref` is then the commit).
    var lockedRef: String?

    var isFullSHA: Bool { ref.map { $0.count == 40 && $0.allSatisfy(\.isHexDigit) } ?? false }

    var environment: [String: String] {
        var env = context.environment
        env["GIT_DIR"] = nil
        env["GIT_TERMINAL_PROMPT"] = "0"  // never wait for a password nobody will type
        env["GIT_ASKPASS"] = "/bin/false"
        env["SSH_ASKPASS"] = "/bin/false"
        return env
    }

    var isLocal: Bool { url.hasPrefix("/") || url.hasPrefix("file://") }

    var masked: String { Masking.url(url) }

    func fetch(into directory: String) throws -> (version: String, source: String, warnings: [String]) {
        let store = context.cacheRoot.map { "\($0)/git/\(cacheKey(url))" }
        if let store { try CacheLock.withLock(in: context.cacheRoot!) { try prepare(store) } }

        // An immutable reference is used from the cache with no network at all.
        if isFullSHA, let store, let ref, CacheStore.isRealDirectory("\(store)/\(ref.lowercased())") {
            try Files.copyTree("\(store)/\(ref.lowercased())", to: directory)
            return (ref.lowercased(), "cached", [])
        }

        var warnings: [String] = []
        var commit: String?
        if !isFullSHA {
            do {
                commit = try resolveRemote()
            } catch let problem as FetchProblem {
                // A flaky network must not fail a build that needs nothing new.
                // What the ref file names must be a commit: a forged one never leads out of the cache.
                if let store, let last = CacheStore.readRecord("\(store)/ref-\(refFileName)"),
                    CacheStore.isCommit(last), CacheStore.isRealDirectory("\(store)/\(last)")
                {
                    warnings.append(
                        "Could not reach \(masked) (\(problem.message)); using the cached commit \(last.prefix(12)).")
                    try Files.copyTree("\(store)/\(last)", to: directory)
                    return (last, "cached (network failed)", warnings)
                }
                throw problem
            }
        } else {
            commit = ref?.lowercased()
        }

        if let store, let commit, CacheStore.isRealDirectory("\(store)/\(commit)") {
            try Files.copyTree("\(store)/\(commit)", to: directory)
            if !isFullSHA, CacheStore.readRecord("\(store)/ref-\(refFileName)") != commit {
                try? Files.write(commit, to: "\(store)/ref-\(refFileName)")
            }
            return (commit, "cached", warnings)
        }

        // Not cached: fetch into a temporary name, then move into place atomically.
        // On the cache's filesystem when there is a cache: keeping the clone is then a rename.
        let stagingDirectory = try context.cache?.stagingDirectory() ?? ScratchDirectory(.clone)
        defer { stagingDirectory.remove() }
        let staging = stagingDirectory.path
        var checkout = staging + "/tree"
        var source = "cloned"
        let resolved: String
        if let commit, let tree = try githubArchive(of: commit, in: staging) {
            checkout = tree
            resolved = commit
            source = "downloaded (GitHub archive)"
        } else {
            try clone(into: checkout, knownCommit: commit)
            resolved = try git(["-C", checkout, "rev-parse", "HEAD"], stage: "reading the cloned commit")
                .trimmingBlanks().trimmingCharacters("\n")
            Self.removeGitDirectories(in: checkout)
        }
        Files.makeExecutable(inDirectory: checkout + "/bin")
        guard let store else {
            try Files.move(checkout, to: directory)
            return (resolved, source, warnings)
        }
        try CacheLock.withLock(in: context.cacheRoot!) {
            if !CacheStore.isRealDirectory("\(store)/\(resolved)") {
                Files.remove("\(store)/\(resolved)")
                try Files.move(checkout, to: "\(store)/\(resolved)")
            }
            if !isFullSHA { try Files.write(resolved, to: "\(store)/ref-\(refFileName)") }
        }
        try Files.copyTree("\(store)/\(resolved)", to: directory)
        return (resolved, source, warnings)
    }

    /// For a GitHub repository, the commit's tarball is one HTTP request instead of a clone. It is
    /// not used when it holds a `.gitmodules` (an archive has no submodules' contents), nor when
    /// the download fails: git is the fallback either way. Returns the extracted buildpack.
    private func githubArchive(of commit: String, in staging: String) throws -> String? {
        let base =
            context.environment[HiddenVariable.githubURL].flatMap { $0.isEmpty ? nil : $0 } ?? "https://github.com"
        // The tarball only stands in for what git itself would fetch: when git's
        // `url.<base>.insteadOf` sends this URL elsewhere (a mirror), git fetches it from there.
        let target = whereGitFetches()
        guard target.hasPrefix(base + "/") else { return nil }
        var path = target.dropFirst(base.count + 1)
        if path.hasSuffix("/") { path = path.dropLast() }
        if path.hasSuffix(".git") { path = path.dropLast(4) }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && !$0.contains("@") && !$0.contains("?") }) else {
            return nil
        }
        let archiveURL = "\(base)/\(parts[0])/\(parts[1])/archive/\(commit).tar.gz"
        context.trace(Command("curl", [Masking.url(archiveURL)], environment: [:]))
        do {
            _ = try context.download(context.archiveRequest(archiveURL), to: staging + "/archive.tar.gz")
            try Files.makeDirectory(staging + "/archive")
            try extractArchive(atPath: staging + "/archive.tar.gz", into: staging + "/archive", stop: context.stop)
        } catch {
            try context.stop.check()
            // Cancelled because another child failed: no clone either.
            if context.isCancelled() { throw FetchProblem("cancelled") }
            return nil
        }
        let root = buildpackRoot(in: staging + "/archive")
        return Files.exists(root + "/.gitmodules") ? nil : root
    }

    /// The commit the ref (or the default branch) points at now, for `multipack lock`: asked of
    /// the remote, or read from a clone when only a clone can tell (a short SHA).
    func resolveCommit() throws -> String {
        if isFullSHA, let ref { return ref.lowercased() }
        if let commit = try resolveRemote() { return commit }
        let stagingDirectory = try ScratchDirectory(.clone)
        defer { stagingDirectory.remove() }
        let staging = stagingDirectory.path
        try clone(into: staging + "/tree", knownCommit: nil)
        return try git(["-C", staging + "/tree", "rev-parse", "HEAD"], stage: "reading the cloned commit")
            .trimmingBlanks().trimmingCharacters("\n")
    }

    /// The URL after git's `insteadOf` rewrites (`git ls-remote --get-url` reads the config only).
    private func whereGitFetches() -> String {
        guard url.hasPrefix("http") else { return url }
        let command = Command("git", ["ls-remote", "--get-url", "--", url], environment: environment)
        context.trace(command)
        guard let result = try? context.build.processes.run(command, stop: context.stop), result.termination.succeeded
        else { return url }
        let rewritten = result.stdoutText.trimmingCharacters("\n")
        return rewritten.isEmpty ? url : rewritten
    }

    /// Makes the entry's directory, owned by this URL. The owner is the masked URL (a password in
    /// scp-like `user:TOKEN@host:path` masked too) rather than a digest, so that a warm build of
    /// git children never waits for libcrypto to load (3 ms). Two URLs that share the 64-bit key
    /// and differ only in what masking hides (credentials, query values) share the entry.
    private func prepare(_ store: String) throws {
        let owner = Masking.text(url)
        if CacheStore.isRealDirectory(store) {
            let record = CacheStore.readRecord(store + "/url")
            if record == owner { return }
            // Earlier versions recorded the URL's SHA-256: their entries are kept, not cloned again.
            if let record, CacheStore.isDigest(record), record == (try? sha256Hex(of: Array(url.utf8))) {
                try Files.write(owner, to: store + "/url")
                return
            }
            // Another URL hashed to the same key, or an entry of an older layout: start afresh.
            Files.remove(store)
        }
        try CacheStore.realDirectory(store)
        try Files.write(owner, to: store + "/url")
    }

    private var refFileName: String {
        cacheKey(ref ?? "HEAD")
    }

    /// The commit the ref points at on the remote, or nil when only a clone can tell (short SHA).
    private func resolveRemote() throws -> String? {
        if isLocal { return try resolveLocal() }
        let output = try git(["ls-remote", "--", url], stage: "resolving \(ref ?? "the default branch")")
        var refs: [String: String] = [:]
        for line in output.lines {
            let parts = line.split(separator: "\t", maxSplits: 1)
            if parts.count == 2 { refs[String(parts[1])] = String(parts[0]) }
        }
        guard let ref else {
            guard let head = refs["HEAD"] else { throw FetchProblem("the repository has no default branch (HEAD)") }
            return head
        }
        for candidate in ["refs/tags/\(ref)^{}", "refs/tags/\(ref)", "refs/heads/\(ref)", ref, "refs/\(ref)"] {
            if let commit = refs[candidate] { return commit }
        }
        if ref.count >= 4, ref.count < 40, ref.allSatisfy(\.isHexDigit) {
            if let store = context.cacheRoot.map({ "\($0)/git/\(cacheKey(url))" }) {
                let matches = Files.list(store).filter { CacheStore.isCommit($0) && $0.hasPrefix(ref.lowercased()) }
                if matches.count == 1 { return matches[0] }
            }
            return nil
        }
        throw FetchProblem(
            "there is no branch, tag or commit named `\(ref)` in the repository",
            hint: "Check the #ref after the URL in .buildpacks.")
    }

    /// A repository on this machine is read directly: its HEAD from its files, anything else with
    /// one git process instead of ls-remote's two.
    private func resolveLocal() throws -> String? {
        let path = url.hasPrefix("file://") ? String(url.dropFirst("file://".count)) : url
        guard Files.isDirectory(path) else { throw FetchProblem("the repository \(path) does not exist") }
        if ref == nil, let head = LocalRepository.head(of: path) { return head }
        let name = ref ?? "HEAD"
        let command = Command(
            "git", ["-C", path, "rev-parse", "--verify", "--quiet", "--end-of-options", name + "^{commit}"],
            environment: environment)
        context.trace(command)
        guard let result = try? context.build.processes.run(command, stop: context.stop), result.termination.succeeded
        else {
            throw FetchProblem(
                ref == nil
                    ? "the repository has no default branch (HEAD)"
                    : "there is no branch, tag or commit named `\(name)` in the repository",
                hint: "Check the #ref after the URL in .buildpacks.")
        }
        return result.stdoutText.trimmingCharacters("\n")
    }

    /// No sample hooks, `info/exclude` or description in the clone's .git, which is removed once
    /// checked out: 18 files fewer made and deleted per clone.
    static let noTemplates = "--template="

    private func clone(into checkout: String, knownCommit: String?) throws {
        let submodules = ["-c", "protocol.file.allow=" + (isLocal ? "always" : "user")]
        let isBranchOrTag = ref != nil && knownCommit != nil && !(ref!.allSatisfy(\.isHexDigit) && ref!.count >= 4)
        if ref == nil || isBranchOrTag {
            let branch = ref.map { ["--branch", $0] } ?? []
            let shallow = ["--depth", "1", "--shallow-submodules"]
            let clone = submodules + ["clone", "--quiet", Self.noTemplates, "--recurse-submodules"] + branch
            do {
                _ = try git(clone + shallow + ["--", url, checkout], stage: "cloning")
            } catch let problem as FetchProblem where problem.output?.contains("shallow") == true {
                // Dumb HTTP servers cannot serve a shallow clone; a full one works everywhere.
                Files.remove(checkout)
                _ = try git(clone + ["--", url, checkout], stage: "cloning")
            }
            return
        }
        if let lockedRef, let target = knownCommit ?? ref,
            try cloneLocked(target, from: lockedRef, into: checkout, submodules: submodules)
        {
            return
        }
        // A commit: a full clone is the path that works with every server.
        _ = try git(
            submodules + ["clone", "--quiet", Self.noTemplates, "--no-checkout", "--", url, checkout], stage: "cloning")
        let target = knownCommit ?? ref!
        do {
            _ = try git(["-C", checkout, "checkout", "--quiet", "--detach", target], stage: "checking out \(target)")
        } catch {
            throw FetchProblem(
                "there is no commit `\(target)` in the repository",
                hint: "Check the #ref after the URL in .buildpacks.")
        }
        _ = try git(
            submodules + ["-C", checkout, "submodule", "update", "--quiet", "--init", "--recursive"],
            stage: "initialising submodules")
    }

    /// A commit locked from a branch or tag: the ref usually still points at it, and a shallow
    /// clone of the ref is far smaller than the full clone a bare commit needs. False when the
    /// commit is not in that clone (the ref moved on): the full clone is then the way.
    private func cloneLocked(_ target: String, from lockedRef: String, into checkout: String, submodules: [String])
        throws -> Bool
    {
        guard !(lockedRef.allSatisfy(\.isHexDigit) && lockedRef.count >= 4) else { return false }
        let clone = submodules + ["clone", "--quiet", Self.noTemplates, "--no-checkout", "--branch", lockedRef]
        do {
            do {
                _ = try git(clone + ["--depth", "1", "--", url, checkout], stage: "cloning")
            } catch let problem as FetchProblem where problem.output?.contains("shallow") == true {
                // Dumb HTTP servers cannot serve a shallow clone; a full clone of the ref holds its history.
                Files.remove(checkout)
                _ = try git(clone + ["--", url, checkout], stage: "cloning")
            }
            _ = try git(["-C", checkout, "checkout", "--quiet", "--detach", target], stage: "checking out \(target)")
        } catch is FetchProblem {
            Files.remove(checkout)
            return false
        }
        _ = try git(
            submodules + ["-C", checkout, "submodule", "update", "--quiet", "--init", "--recursive"],
            stage: "initialising submodules")
        return true
    }

    @discardableResult
    private func git(_ arguments: [String], stage: String) throws -> String {
        var command = Command("git", arguments, environment: environment)
        // A clone in flight stops when another child's fetch fails (SPEC §5).
        command.isCancelled = context.isCancelled
        context.trace(command)
        let result: ProcessResult
        do {
            result = try context.build.processes.run(command, stop: context.stop)
        } catch {
            throw FetchProblem("git could not be started (\(MultipackError.reason(error)))", hint: "Install git.")
        }
        try context.stop.check()
        if context.isCancelled() { throw FetchProblem("cancelled: another buildpack could not be fetched") }
        guard result.termination.succeeded else {
            // git prints credentials in its own forms ("unable to look up user:TOKEN@host").
            let output = Masking.scrub(result.stderrText, secretsOf: url).trimmingBlanks().trimmingCharacters("\n")
            throw FetchProblem(
                "git failed while \(stage) (\(result.termination))",
                output: output.isEmpty ? nil : output)
        }
        return result.stdoutText
    }

    /// Drops `.git` (and submodules' `.git` files): a child is a tree of files, nothing more.
    static func removeGitDirectories(in directory: String) {
        for name in Files.list(directory) {
            let path = directory + "/" + name
            var info = stat()
            guard lstat(path, &info) == 0 else { continue }
            if name == ".git" {
                Files.remove(path)
            } else if (info.st_mode & S_IFMT) == S_IFDIR {
                removeGitDirectories(in: path)
            }
        }
    }
}

/// A short stable name for a cache entry (FNV-1a): it only names a directory, and the entry
/// records the URL it belongs to, so a collision is detected rather than trusted.
func cacheKey(_ text: String) -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in text.utf8 {
        hash ^= UInt64(byte)
        hash = hash &* 0x100_0000_01b3
    }
    return String(hash, radix: 16).leftPadded(to: 16)
}

extension String {
    func trimmingCharacters(_ characters: Character...) -> String {
        var s = Substring(self)
        while let last = s.last, characters.contains(last) { s = s.dropLast() }
        while let first = s.first, characters.contains(first) { s = s.dropFirst() }
        return String(s)
    }
}

/// An exclusive lock on CACHE_DIR/.multipack, so builds sharing a cache never see half an entry.
enum CacheLock {
    static func withLock<T>(in root: String, _ body: () throws -> T) throws -> T {
        // O_NOFOLLOW: a symlink put in its place never makes multipack create a file elsewhere.
        func openLock() -> Int32 { open(root + "/lock", O_CREAT | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0o644) }
        var descriptor = openLock()
        if descriptor < 0 && errno == ENOENT {
            try Files.makeDirectory(root)
            descriptor = openLock()
        }
        guard descriptor >= 0 else { throw FileError(path: root + "/lock", action: "open", errno: errno) }
        defer { close(descriptor) }
        while flock(descriptor, LOCK_EX) != 0 && errno == EINTR {}
        defer { flock(descriptor, LOCK_UN) }
        return try body()
    }
}
