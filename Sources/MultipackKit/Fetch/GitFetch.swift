import Glibc

/// A git child: resolved with `git ls-remote`, cloned once, then served from the cache (SPEC §5).
///
/// Cache layout, under CACHE_DIR/.multipack/git/<key of the URL>/:
///   url          the masked URL the entry belongs to (a key collision is detected, never trusted;
///                the URL itself is not stored, since it may hold credentials)
///   <commit>/    the checked-out tree of that commit, without .git, exactly as git checked it out
///   <commit>.objects  the commit's and its trees' git objects, which verify <commit>/ before
///                every use (GitObjects, VerifiedCopy): children can write in CACHE_DIR
///   ref-<name>   the commit a floating ref resolved to last time (for offline fallback)
struct GitFetch {
    var url: String
    var ref: String?
    var context: FetchContext
    /// The branch or tag a `commit=` pin was locked from (`ref` is then the commit).
    var lockedRef: String?
    /// The commit comes from `.buildpacks.lock` (for the hint when it is gone).
    var pinnedByLock = false

    var isFullSHA: Bool { ref.map { $0.count == 40 && $0.allSatisfy(\.isHexDigit) } ?? false }

    var environment: [String: String] { Self.environment(for: url, from: context.environment) }

    /// What git runs with for `url`: never a prompt, no LFS smudging, the URL's credentials
    /// through the environment (`GitCredentials`). The app's own repository (SPEC §19) too.
    static func environment(for url: String, from base: [String: String]) -> [String: String] {
        var env = base
        // What a git hook that started multipack points at is not the repository git works on here.
        for name in [
            "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES",
            "GIT_COMMON_DIR",
        ] {
            env[name] = nil
        }
        env["GIT_TERMINAL_PROMPT"] = "0"  // never wait for a password nobody will type
        env["GIT_ASKPASS"] = "/bin/false"
        env["SSH_ASKPASS"] = "/bin/false"
        // A checkout must be its commit's blobs to be verified later: no LFS smudging.
        env["GIT_LFS_SKIP_SMUDGE"] = "1"
        if let credentials = GitCredentials(url) { credentials.configure(&env) }
        return env
    }

    /// The URL git is given: an http(s) URL's user and password go through the environment
    /// instead (`GitCredentials`), since every user of the machine can read a process's argv.
    var gitURL: String { GitCredentials(url)?.url ?? url }

    var isLocal: Bool { url.hasPrefix("/") || url.hasPrefix("file://") }

    var masked: String { Masking.url(url) }

    func fetch(into directory: String) throws -> (version: String, source: String, warnings: [String]) {
        let store = context.cacheRoot.map { "\($0)/git/\(cacheKey(url))" }
        if let store { try CacheLock.withLock(in: context.cacheRoot!) { try prepare(store) } }
        var warnings: [String] = []

        // An immutable reference is used from the cache with no network at all.
        if isFullSHA, let store, let commit = ref?.lowercased(),
            try serveCached(commit, from: store, into: directory, warnings: &warnings)
        {
            return (commit, "cached", warnings)
        }

        var commit: String?
        if !isFullSHA {
            do {
                commit = try resolveRemote()
            } catch let problem as FetchProblem {
                // A flaky network must not fail a build that needs nothing new.
                // What the ref file names must be a commit: a forged one never leads out of the cache.
                guard let store, let last = CacheStore.readRecord("\(store)/ref-\(refFileName)"),
                    CacheStore.isCommit(last), CacheStore.isRealDirectory("\(store)/\(last)")
                else { throw problem }
                guard try serveCached(last, from: store, into: directory, warnings: &warnings) else {
                    throw FetchProblem(
                        problem.message + "; the cached commit \(last.prefix(12)) could not be used instead",
                        output: warnings.joined(separator: "\n"), hint: problem.hint)
                }
                warnings.insert(
                    "Could not reach \(masked) (\(problem.message)); using the cached commit \(last.prefix(12)).", at: 0
                )
                return (last, "cached (network failed)", warnings)
            }
        } else {
            commit = ref?.lowercased()
        }

        if !isFullSHA, let store, let commit, try serveCached(commit, from: store, into: directory, warnings: &warnings)
        {
            if CacheStore.readRecord("\(store)/ref-\(refFileName)") != commit {
                try? Files.write(commit, to: "\(store)/ref-\(refFileName)")
            }
            return (commit, "cached", warnings)
        }

        // Not cached: fetch into a temporary name, then move into place atomically.
        // On the cache's filesystem when there is a cache: keeping the clone is then a rename.
        let stagingDirectory = try context.cache?.stagingDirectory() ?? ScratchDirectory(.clone)
        defer { stagingDirectory.remove() }
        let staging = stagingDirectory.path
        let checkout = staging + "/tree"
        // The tarball has no git objects, so nothing could verify it on a later use: it only
        // serves a build that keeps nothing (SPEC §5: a cached entry must be checkable).
        if store == nil, let commit, let tree = try githubArchive(of: commit, in: staging) {
            try Files.move(tree, to: directory)
            return (commit, "downloaded (GitHub archive)", warnings)
        }
        do {
            try clone(into: checkout, knownCommit: commit)
        } catch var problem as FetchProblem where !warnings.isEmpty {
            // Why a clone was needed is part of why the build failed.
            problem.output = (warnings + (problem.output.map { [$0] } ?? [])).joined(separator: "\n")
            throw problem
        }
        let resolved = try git(["-C", checkout, "rev-parse", "HEAD"], stage: "reading the cloned commit")
            .trimmingBlanks().trimmingCharacters("\n")
        guard let store else {
            Self.removeGitDirectories(in: checkout)
            try Files.move(checkout, to: directory)
            return (resolved, "cloned", warnings)
        }
        // What verifies the checkout on every later use is taken while .git is still there, and
        // the fresh checkout must pass the same check before it is kept.
        var unverifiable: String?
        var objects: GitObjects?
        do {
            objects = try GitObjects.record(checkout: checkout, commit: resolved) { directory, arguments in
                try gitOutput(["-C", directory] + arguments, stage: "reading the cloned commit's objects")
            }
        } catch let problem as GitObjects.Unverifiable {
            unverifiable = problem.description
        }
        Self.removeGitDirectories(in: checkout)
        if let objects {
            do {
                try VerifiedCopy.copy(checkout, commit: resolved, objects: objects, to: directory)
            } catch let changed as VerifiedCopy.Changed {
                Files.remove(directory)
                unverifiable = changed.description + " as git checked it out"
            }
        }
        if let unverifiable {
            try Files.move(checkout, to: directory)
            warnings.append(
                "The checkout of \(masked) at \(resolved.prefix(12)) cannot be verified against its commit "
                    + "(\(unverifiable)): a .gitattributes filter or end-of-line conversion changes files as git "
                    + "checks them out. It is used for this build and not kept in the cache, where it could not be "
                    + "checked before a later build runs it.")
            return (resolved, "cloned, not cached", warnings)
        }
        try CacheLock.withLock(in: context.cacheRoot!) {
            if !CacheStore.isRealDirectory("\(store)/\(resolved)") {
                Files.remove("\(store)/\(resolved)")
                try Files.writeBytes(objects!.serialized, to: "\(store)/\(resolved).objects")
                try Files.move(checkout, to: "\(store)/\(resolved)")
            }
            if !isFullSHA { try Files.write(resolved, to: "\(store)/ref-\(refFileName)") }
        }
        return (resolved, "cloned", warnings)
    }

    /// Copies the cached checkout of `commit` into `directory`, checked against the commit's
    /// objects as it is copied. False when there is none, or when it is not the commit's any more:
    /// it is then dropped (with a warning that says what changed) and never run.
    private func serveCached(_ commit: String, from store: String, into directory: String, warnings: inout [String])
        throws -> Bool
    {
        let entry = "\(store)/\(commit)"
        guard CacheStore.isCommit(commit), CacheStore.isRealDirectory(entry) else { return false }
        let reason: String
        do {
            // An entry an earlier multipack kept has no objects: it is fetched again, once.
            guard let bytes = CacheStore.readBounded(entry + ".objects", limit: GitObjects.maxBytes) else {
                drop(entry)
                return false
            }
            guard let objects = try GitObjects(parsing: bytes) else {
                throw VerifiedCopy.Changed(description: "the record of its git objects is damaged")
            }
            try VerifiedCopy.copy(entry, commit: commit, objects: objects, to: directory)
            return true
        } catch let changed as VerifiedCopy.Changed {
            reason = changed.description
        }
        Files.remove(directory)
        drop(entry)
        warnings.append(
            "The cached checkout of \(masked) at \(commit.prefix(12)) was changed on disk (\(reason)). "
                + "It was not run: it was dropped and is fetched again.")
        return false
    }

    private func drop(_ entry: String) {
        _ = try? CacheLock.withLock(in: context.cacheRoot!) {
            Files.remove(entry)
            Files.remove(entry + ".objects")
        }
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
        // A private repository's tarball needs the credentials git gets another way.
        guard target.hasPrefix(base + "/"), GitCredentials(url) == nil else { return nil }
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
        let command = Command("git", ["ls-remote", "--get-url", "--", gitURL], environment: environment)
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
        let output = try git(["ls-remote", "--", gitURL], stage: "resolving \(ref ?? "the default branch")")
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

    @discardableResult
    func git(_ arguments: [String], stage: String) throws -> String {
        String(decoding: try gitOutput(arguments, stage: stage), as: UTF8.self)
    }

    /// git's standard output as bytes (paths in `ls-tree -z` need not be UTF-8).
    func gitOutput(_ arguments: [String], stage: String) throws -> [UInt8] {
        var command = Command("git", arguments, environment: environment)
        // A clone in flight stops when another child's fetch fails (SPEC §5).
        command.isCancelled = context.isCancelled
        context.trace(command)
        let result: ProcessResult
        do {
            result = try context.build.processes.run(command, stop: context.stop)
        } catch let error as SpawnError where error.errno == ENOENT {
            throw FetchProblem("git could not be started (\(MultipackError.reason(error)))", hint: "Install git.")
        } catch {
            // E2BIG (an argument too long for the system) and the like: git is there.
            throw FetchProblem("git could not be started (\(MultipackError.reason(error)))")
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
        return result.stdout
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
