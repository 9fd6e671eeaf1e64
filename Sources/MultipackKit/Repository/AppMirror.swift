import Glibc

/// The app's repository, mirrored in the user's cache and brought up to date on each build
/// (SPEC §19): `$XDG_CACHE_HOME/multipack/repos/<name>-<key>/`, keyed by the masked URL.
///
///     url          the masked URL the mirror belongs to (a key collision starts it afresh)
///     lock         held while the mirror is fetched into and read from, so that builds of
///                  several commits at once never see half a fetch
///     mirror.git   a bare repository: the remote's branches and tags, and `refs/multipack/HEAD`
///                  for its default branch; no remote is configured, so no URL is stored in it
///
/// git runs as for the children (SPEC §5): no prompt, the URL's credentials through the
/// environment, `insteadOf` honoured by git itself, the fetch held to `MULTIPACK_FETCH_TIMEOUT`
/// and stopped when it stalls.
struct AppMirror {
    let repository: AppRepository
    let directory: String
    let git: MirrorGit

    var bare: String { directory + "/mirror.git" }

    init(_ repository: AppRepository, environment: [String: String], settings: Settings, context: BuildContext) {
        self.repository = repository
        directory = repository.mirrorDirectory(environment: environment)
        git = MirrorGit(
            url: repository.url, environment: GitFetch.environment(for: repository.url, from: environment),
            timeout: settings.fetchTimeout, trace: context.log.tracer(settings.xtrace), context: context)
    }

    /// `$XDG_CACHE_HOME/multipack/repos`, beside `apps/` and `stacks/`.
    static func reposRoot(_ environment: [String: String]) -> String {
        String(LocalState.appsRoot(environment).dropLast("apps".count)) + "repos"
    }

    /// The URL git is given: without its userinfo, which goes through the environment.
    var gitURL: String { GitCredentials(repository.url)?.url ?? repository.url }

    var isLocal: Bool { repository.url.hasPrefix("/") || repository.url.hasPrefix("file://") }

    /// Brings the mirror up to date (under its lock) and resolves the ref to its full commit. A
    /// full commit the mirror has needs no network; when the remote cannot be reached and the
    /// mirror knows the ref, that is used, with a warning.
    func resolve(log: Log) throws -> String {
        try Files.makeDirectory(directory)
        return try CacheLock.withLock(in: directory) {
            try prepare()
            if let ref = repository.ref, CacheStore.isCommit(ref.lowercased()),
                let commit = try? lookUp(ref.lowercased())
            {
                log.step("Using \(repository.masked) at \(commit) (the mirror has it)")
                return commit
            }
            log.step("Fetching \(repository.masked) into its mirror (\(directory))")
            do {
                try fetch()
            } catch let problem as MultipackError {
                guard !problem.isInterrupted, let commit = try? lookUp(repository.ref) else { throw problem }
                log.warning(
                    "\(problem.headline) \(problem.details.first ?? "")\nBuilding \(repository.ref ?? "its default branch") "
                        + "as the mirror last saw it: \(commit.prefix(12)).")
                return commit
            }
            guard let commit = try lookUp(repository.ref) ?? fetchCommit() else { throw try unresolved() }
            log.detail("\(repository.ref ?? "The default branch") is \(commit)")
            return commit
        }
    }

    /// Makes the bare repository, owned by this URL (an entry of another URL with the same key
    /// is started afresh).
    private func prepare() throws {
        let owner = repository.masked
        if CacheStore.readRecord(directory + "/url") != owner || !CacheStore.isRealDirectory(bare + "/objects") {
            Files.remove(bare)
            _ = try git.run(["init", "--quiet", "--bare", GitFetch.noTemplates, bare], stage: "making the mirror")
            try Files.write(owner, to: directory + "/url")
        }
    }

    /// Fetches every branch and tag (and the default branch when no ref is given), pruning what
    /// the remote deleted. Dumb HTTP servers serve this as well as smart ones.
    private func fetch() throws {
        var refspecs = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"]
        if repository.ref == nil { refspecs.append("+HEAD:refs/multipack/HEAD") }
        // A transfer that moves no byte for 30 s has stalled (SPEC §5).
        let stall = ["-c", "http.lowSpeedLimit=1", "-c", "http.lowSpeedTime=30"]
        _ = try git.run(
            stall + ["-C", bare, "fetch", "--quiet", "--prune", "--no-write-fetch-head", "--", gitURL] + refspecs,
            stage: "fetching")
    }

    /// A full commit no branch or tag reaches (a pull request's, `$GITHUB_SHA` of a merge), asked
    /// for by name, as servers that allow it serve it (GitHub, GitLab, git's protocol v2); kept
    /// under `refs/multipack/commits/`, which no fetch prunes. Nil when the server will not.
    private func fetchCommit() throws -> String? {
        guard let ref = repository.ref?.lowercased(), CacheStore.isCommit(ref) else { return nil }
        let result = try git.result(
            [
                "-C", bare, "fetch", "--quiet", "--no-write-fetch-head", "--", gitURL,
                "\(ref):refs/multipack/commits/\(ref)",
            ])
        return result.termination.succeeded ? try lookUp(ref) : nil
    }

    /// The full commit a ref names in the mirror: a tag, then a branch (as git itself prefers
    /// them), then a commit's name or the start of one (4 hex digits or more). Nil when none.
    /// Nothing else git would read as a revision (`main~1`, `@{u}`) is looked up.
    private func lookUp(_ ref: String?) throws -> String? {
        guard let ref else { return try verify("refs/multipack/HEAD") }
        for candidate in ["refs/tags/" + ref, "refs/heads/" + ref] {
            if let commit = try verify(candidate) { return commit }
        }
        guard Self.isHexName(ref) else { return nil }
        return try verify(ref.lowercased())
    }

    private func verify(_ name: String) throws -> String? {
        let result = try git.result(
            ["-C", bare, "rev-parse", "--verify", "--quiet", "--end-of-options", name + "^{commit}"])
        guard result.termination.succeeded else { return nil }
        let commit = result.stdoutText.trimmingCharacters("\n")
        return CacheStore.isCommit(commit) ? commit : nil
    }

    static func isHexName(_ ref: String) -> Bool {
        (4...40).contains(ref.utf8.count) && ref.allSatisfy(\.isHexDigit)
    }

    /// The failure for a ref the repository does not have: a build failure (exit 1) naming the
    /// ref and the masked URL; a short commit that starts several commits' names says so.
    private func unresolved() throws -> MultipackError {
        let ref = repository.ref.map(Masking.text) ?? "HEAD"
        if let short = repository.ref, Self.isHexName(short) {
            let result = try git.result(["-C", bare, "rev-parse", "--disambiguate=" + short.lowercased()])
            let matches = result.stdoutText.lines.count
            if matches > 1 {
                return MultipackError.build(
                    "`\(ref)` is the start of \(matches) commits' names in \(repository.masked).",
                    hint: "Give more digits of the commit, or its full name.")
            }
        }
        guard repository.ref != nil else {
            return MultipackError.build(
                "\(repository.masked) has no default branch (HEAD names no commit).",
                hint: "Name a branch, tag or commit after the URL: \(repository.masked)#main")
        }
        return MultipackError.build(
            "There is no branch, tag or commit `\(ref)` in \(repository.masked).",
            hint: "Check the ref after the # (a branch, a tag, or a commit the repository's branches or tags reach).")
    }

    /// A file of `commit` (`.buildpacks`), as bytes; nil when the commit has none.
    func file(_ path: String, at commit: String) -> [UInt8]? {
        guard let result = try? git.result(["-C", bare, "cat-file", "blob", "--end-of-options", "\(commit):\(path)"]),
            result.termination.succeeded
        else { return nil }
        return result.stdout
    }

    /// The commit's tree in `directory` (made here), as Heroku builds it: the files only, no
    /// `.git`, submodules initialised from the URLs `.gitmodules` gives (relative ones against the
    /// app's own URL), files exactly as the commit has them. The clone is made under the lock,
    /// by hard links into the mirror: a fetch of another build cannot take objects from it.
    func checkout(_ commit: String, into directory: String) throws {
        try CacheLock.withLock(in: self.directory) {
            _ = try git.run(
                ["clone", "--quiet", "--no-checkout", GitFetch.noTemplates, "--", bare, directory],
                stage: "copying \(commit.prefix(12)) out of the mirror")
        }
        _ = try git.run(
            GitFetch.checkoutConfig + ["-C", directory, "checkout", "--quiet", "--detach", commit],
            stage: "checking out \(commit.prefix(12))")
        if Files.exists(directory + "/.gitmodules") {
            _ = try git.run(
                ["-C", directory, "config", "remote.origin.url", gitURL], stage: "initialising submodules")
            let protocols = ["-c", "protocol.file.allow=" + (isLocal ? "always" : "user")]
            _ = try git.run(
                protocols + GitFetch.checkoutConfig + [
                    "-C", directory, "submodule", "update", "--quiet", "--init", "--recursive",
                ], stage: "initialising submodules")
        }
        GitFetch.removeGitDirectories(in: directory)
    }
}

/// git for the app's mirror: each command held to the fetch deadline, its errors with the
/// credentials scrubbed out.
struct MirrorGit {
    var url: String
    var environment: [String: String]
    var timeout: Int
    var trace: @Sendable (Command) -> Void
    var context: BuildContext

    /// The command's result, whatever its exit; a missing git, a stop or the deadline throws.
    func result(_ arguments: [String]) throws -> ProcessResult {
        var command = Command("git", arguments, environment: environment)
        let clock = context.clock
        let deadline = clock.now + .seconds(timeout)
        command.isCancelled = { clock.now >= deadline }
        trace(command)
        let result: ProcessResult
        do {
            result = try context.processes.run(command, stop: context.stop)
        } catch let error as SpawnError {
            throw MultipackError.build(
                "git could not be started to fetch the app (\(MultipackError.reason(error))).",
                hint: error.errno == ENOENT ? "Install git." : nil)
        }
        try context.stop.check()
        if clock.now >= deadline, !result.termination.succeeded {
            throw MultipackError.build(
                "git did not finish within \(timeout) s with \(Masking.url(url)).",
                hint: "MULTIPACK_FETCH_TIMEOUT (seconds) gives a slow remote more time.")
        }
        return result
    }

    /// The command's output; a failure is a build failure naming the stage and the masked URL,
    /// with git's own words (scrubbed: git prints credentials in forms of its own).
    func run(_ arguments: [String], stage: String) throws -> ProcessResult {
        let result = try result(arguments)
        guard result.termination.succeeded else {
            let output = Masking.scrub(result.stderrText, secretsOf: url).trimmingBlanks().trimmingCharacters("\n")
            throw MultipackError.build(
                "Could not fetch the app from \(Masking.url(url)): git failed while \(stage) (\(result.termination)).",
                details: output.isEmpty ? [] : output.lines.prefix(20).map { String($0) },
                hint: "Check the URL, and that this machine can reach it (git's credentials, ssh keys, a proxy).")
        }
        return result
    }
}
