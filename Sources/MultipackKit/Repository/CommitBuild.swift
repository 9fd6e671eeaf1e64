import FoundationEssentials
import Glibc

/// What sets a commit's build apart from a directory's (SPEC §19).
struct CommitOrigin: Sendable {
    /// The commit's own state directory, laid out as any app's: two commits build at once
    /// without meeting (`LocalState.App`).
    var state: String
    /// The cache the repository's commits share: one build has it at a time, a build of another
    /// commit meanwhile starts with an empty one.
    var cache: String
    /// `ci`'s, shared the same way and apart from `build`'s, as a directory app's is.
    var ciCache: String
    /// SOURCE_VERSION: the full commit.
    var sourceVersion: String
    /// What the log and the hints call the app: its masked URL.
    var name: String
    /// What `Try it:` runs: the slug filed for the commit.
    var runTarget: String?
}

/// `multipack build APP` and `multipack ci APP`, where APP is an app's directory or a repository
/// at a ref, `GIT_URL[#REF]` (SPEC §19), and where `--slug-dir` files slugs by commit.
///
/// A repository's state is `apps/<name>-<key of the masked URL>/` under the user's cache:
///
///     url                the masked URL it belongs to
///     cache/, ci-cache/  CACHE_DIR of build and of ci, shared by its commits
///     commits/<commit>/  each commit's own state (a directory app's layout: lock, build, slug);
///                        a successful build removes the other commits' (one build kept per app)
///     checkout-<pid>-*   the commit's tree while it is built (removed after; a killed one's swept)
///
/// The repository itself is mirrored under `repos/` (`AppMirror`).
public struct AppBuild {
    /// The app as the user named it.
    public var app: String
    public var options: LocalBuildOptions
    /// `--slug-dir DIR`.
    public var slugDirectory: String?
    /// `--force`: build a commit whose slug is filed already.
    public var force = false
    public var invocation: Invocation
    public var mode: LocalBuild.Mode

    public init(app: String, options: LocalBuildOptions, invocation: Invocation, mode: LocalBuild.Mode = .build) {
        self.app = app
        self.options = options
        self.invocation = invocation
        self.mode = mode
    }

    var log: Log { invocation.log }
    var caller: [String: String] { invocation.environment }

    public func run() throws {
        let repository = Files.isDirectory(app) ? nil : AppRepository.parse(app)
        guard repository != nil || slugDirectory != nil else {
            return try LocalBuild(options: options, invocation: invocation, mode: mode).run()
        }
        var quiet = options
        quiet.json = false
        try LocalBuild.printingSummary(json: options.json) {
            LocalBuild(options: quiet, invocation: invocation, mode: mode).summarized { summary in
                try checkOptions(repository)
                // Read once: an --env-file may be a pipe.
                var options = quiet
                let configVars = try options.configArguments.resolve(environment: caller)
                options.configArguments = ConfigVarArguments(pairs: configVars.map { "\($0.key)=\($0.value)" })
                if let repository {
                    try build(repository, options: options, configVars: configVars, &summary)
                } else {
                    try buildCheckout(options: options, configVars: configVars, &summary)
                }
            }
        }
    }

    /// multipack's own settings, from the config vars (the last of a name wins) and the caller's
    /// environment.
    private func settings(_ configVars: [(key: String, value: String)]) throws -> Settings {
        try Settings(
            configVars: Dictionary(configVars.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 }),
            environment: caller)
    }

    /// Usage errors (exit 2) before anything is fetched or run.
    private func checkOptions(_ repository: AppRepository?) throws {
        try options.validate()
        try repository?.check()
        guard let slugDirectory else { return }
        guard mode == .build else {
            throw MultipackError.usage("--slug-dir files slugs: it is an option of build, not of ci.")
        }
        guard options.slugPath == nil else {
            throw MultipackError.usage(
                "--slug and --slug-dir both say where the slug goes.",
                hint: "Give --slug FILE for one slug, or --slug-dir DIR to file slugs by commit.")
        }
        try SlugDirectory.check(Files.absolute(slugDirectory))
    }

    /// A commit of a repository: the mirror brought up to date, the ref resolved, the commit's
    /// tree built with SOURCE_VERSION set to it, its slug filed.
    private func build(
        _ repository: AppRepository, options: LocalBuildOptions, configVars: [(key: String, value: String)],
        _ summary: inout LocalBuildSummary
    ) throws {
        let context = invocation.context
        summary.app = repository.masked
        let settings = try self.settings(configVars)
        log.step("Building \(repository.masked)\(repository.shownRef)")
        let mirror = AppMirror(repository, environment: caller, settings: settings, context: context)
        let commit = try mirror.resolve(log: log)
        summary.sourceVersion = commit
        var commitSummary = LocalBuildSummary.Commit(repository: repository.masked, ref: repository.ref, commit: commit)

        let stateRoot = repository.stateDirectory(environment: caller)
        try Files.makeDirectory(stateRoot + "/commits")
        guard let lock = CommitLock(commits: stateRoot + "/commits", commit: commit, waiting: true, log: log) else {
            throw FileError(path: stateRoot + "/commits", action: "lock a commit's state in", errno: errno)
        }
        defer { lock.release() }
        if CacheStore.readRecord(stateRoot + "/url") != repository.masked {
            try Files.write(repository.masked, to: stateRoot + "/url")
        }
        ScratchDirectory.sweep(prefixes: [Self.checkoutPrefix], in: stateRoot)
        let checkoutDirectory = try ScratchDirectory(prefix: Self.checkoutPrefix, in: stateRoot)
        defer { checkoutDirectory.remove() }
        let appDir = checkoutDirectory.path + "/app"
        try mirror.checkout(commit, into: appDir)

        var options = options
        options.appDir = appDir
        let target = slugDirectory.map {
            SlugDirectory(root: Files.absolute($0), app: repository.name, version: commit)
        }
        let inputs = SlugInputs(
            options: options, appDir: appDir, callerDir: Files.absolute("."), environment: caller, context: context)
        if let target, try alreadyBuilt(target, inputs: inputs, configVars: configVars, settings: settings, &summary) {
            commitSummary.slugDirectory = SlugFiles(target, built: false)
            summary.commit = commitSummary
            return
        }
        let state = stateRoot + "/commits/" + commit
        options.origin = CommitOrigin(
            state: state, cache: stateRoot + "/cache", ciCache: stateRoot + "/ci-cache", sourceVersion: commit,
            name: repository.masked, runTarget: target?.slug ?? LocalState.App(path: state, cache: "").kept.slug)
        try LocalBuild(options: options, invocation: invocation, mode: mode).perform(&summary)
        if let target {
            try file(summary, in: target, inputs: inputs, configVars: configVars, repository: repository)
            commitSummary.slugDirectory = SlugFiles(target, built: true)
        }
        summary.commit = commitSummary
        Self.removeOtherCommits(in: stateRoot + "/commits", keeping: commit)
    }

    static let checkoutPrefix = "checkout-"

    /// A local app directory in a git work tree, with `--slug-dir`: its slug is named by HEAD's
    /// commit, `-dirty` added when the work tree has changes under the app (a dirty build is
    /// always built).
    private func buildCheckout(
        options: LocalBuildOptions, configVars: [(key: String, value: String)], _ summary: inout LocalBuildSummary
    ) throws {
        guard let slugDirectory else { return }
        let appDir = options.appDir
        guard Files.isDirectory(appDir) else {
            throw MultipackError.usage(
                "\(appDir) is neither a directory nor a git URL.",
                hint: "Give multipack build the path of your app's directory, or its repository's URL (with #REF).")
        }
        let head = try LocalCheckout.head(of: appDir, environment: caller)
        let version = head.commit + (head.dirty ? "-dirty" : "")
        summary.sourceVersion = head.commit
        var commitSummary = LocalBuildSummary.Commit(repository: nil, ref: nil, commit: head.commit)
        commitSummary.dirty = head.dirty
        let name = AppRepository.safeName(appDir.split(separator: "/").last.map(String.init) ?? "app")
        let target = SlugDirectory(root: Files.absolute(slugDirectory), app: name, version: version)
        let inputs = SlugInputs(
            options: options, appDir: appDir, callerDir: Files.absolute("."), environment: caller,
            context: invocation.context)
        if head.dirty {
            log.step("\(appDir) has changes HEAD (\(head.commit.prefix(12))) does not hold: built as \(version)")
        } else if try alreadyBuilt(
            target, inputs: inputs, configVars: configVars, settings: settings(configVars), &summary)
        {
            commitSummary.slugDirectory = SlugFiles(target, built: false)
            summary.commit = commitSummary
            return
        }
        try LocalBuild(options: options, invocation: invocation, mode: mode).perform(&summary)
        try file(summary, in: target, inputs: inputs, configVars: configVars, repository: nil, dirty: head.dirty)
        commitSummary.slugDirectory = SlugFiles(target, built: true)
        summary.commit = commitSummary
    }

    /// Whether the slug filed for this commit was built from the same inputs (then it is not
    /// built again, and the log says so); `--force` builds it whatever.
    private func alreadyBuilt(
        _ target: SlugDirectory, inputs: SlugInputs, configVars: [(key: String, value: String)], settings: Settings,
        _ summary: inout LocalBuildSummary
    ) throws -> Bool {
        guard let record = target.existing() else { return false }
        if force {
            log.step("\(target.slug) is there already; building it again (--force)")
            return false
        }
        log.step("\(target.slug) is there already: checking what went into it")
        guard let buildpacks = try inputs.resolved(settings: settings) else {
            log.detail("Its buildpacks could not all be resolved now: it is built again.")
            return false
        }
        var stack = inputs.stack
        if record.inputs.stack.digest != nil { stack.digest = inputs.currentDigest() }
        let now = SlugRecord.Inputs(
            stack: stack, buildpacks: buildpacks, configVars: try SlugRecord.ConfigVars(configVars))
        let differences = now.differences(from: record.inputs)
        guard differences.isEmpty else {
            log.detail("It was built from other inputs, so it is built again:")
            for line in differences { log.detail("  " + line) }
            return false
        }
        log.step(
            "Not built again: \(target.slug) was built from this commit with the same inputs (--force builds it anyway)"
        )
        if record.inputs.stack.offlineFallback == true {
            log.detail("(on this machine's own system: the stack's image could not be had offline then)")
        }
        summary.slug = LocalBuildSummary.SlugInfo(
            path: target.slug, bytes: Files.size(target.slug), limitBytes: Int64(options.slugLimitMB) << 20)
        summary.release = target.release
        summary.processTypes = record.processTypes
        return true
    }

    /// Files the slug the build wrote, its release and its record in `--slug-dir`.
    private func file(
        _ summary: LocalBuildSummary, in target: SlugDirectory, inputs: SlugInputs,
        configVars: [(key: String, value: String)], repository: AppRepository?, dirty: Bool = false
    ) throws {
        guard let slug = summary.slug?.path, let release = summary.release else { return }
        let record = SlugRecord(
            app: target.app, repository: repository?.masked, ref: repository?.ref, commit: summary.sourceVersion ?? "",
            dirty: dirty,
            inputs: SlugRecord.Inputs(
                stack: SlugInputs.stack(summary.root, before: inputs.stack),
                buildpacks: inputs.recorded(summary.children),
                configVars: try SlugRecord.ConfigVars(configVars)),
            slugBytes: Files.size(slug), slugSha256: try sha256Hex(ofFile: slug), processTypes: summary.processTypes,
            multipack: MultipackVersion.current.version, builtAt: LocalBuild.timestamp())
        try target.publish(slug: slug, release: release, record: record)
        log.step("Filed the slug of \(target.version.prefix(12)) in \(target.directory)")
        log.detail("\(target.version).tar.gz, \(target.version).release.yml, \(target.version).json")
    }

    /// The states of the repository's other commits go once this one's build is kept (one build
    /// kept per app, SPEC §12); a commit whose build is running (its `CommitLock` held) stays.
    static func removeOtherCommits(in commits: String, keeping commit: String) {
        for name in Files.list(commits) where name != commit && CacheStore.isCommit(String(name.prefix(40))) {
            guard let lock = CommitLock(commits: commits, commit: name, waiting: false) else { continue }
            let aside = ScratchDirectory.name(prefix: ".removed-", in: commits)
            if rename(commits + "/" + name, aside) == 0 { Files.remove(aside) }
            lock.release(removing: true)
        }
        ScratchDirectory.sweep(prefixes: [".removed-"], in: commits)
    }
}

/// Held by a commit's build from before its state is made until its slug is filed: a build of
/// another commit that finishes meanwhile leaves this commit's state alone, and a second build
/// of the same commit waits for the first (and then finds its slug filed). `commits/.<commit>.lock`.
struct CommitLock {
    private let descriptor: Int32
    private let path: String

    /// nil when `waiting` is false and another process holds it.
    init?(commits: String, commit: String, waiting: Bool, log: Log? = nil) {
        path = "\(commits)/.\(commit).lock"
        var said = false
        while true {
            let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard descriptor >= 0 else { return nil }
            if flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
                guard waiting else {
                    close(descriptor)
                    return nil
                }
                if !said, let log {
                    log.step("Another build of \(commit.prefix(12)) is running: waiting for it to end")
                    said = true
                }
                while flock(descriptor, LOCK_EX) != 0 && errno == EINTR {}
            }
            // A pruner may have removed the file between its open and our lock: only the lock of
            // the file at the path counts.
            var held = stat()
            var named = stat()
            if fstat(descriptor, &held) == 0, lstat(path, &named) == 0, held.st_ino == named.st_ino,
                held.st_dev == named.st_dev
            {
                self.descriptor = descriptor
                return
            }
            close(descriptor)
        }
    }

    func release(removing: Bool = false) {
        if removing { unlink(path) }
        close(descriptor)
    }
}

/// The three files a commit's slug is filed as.
struct SlugFiles: Encodable {
    var slug: String
    var release: String
    var record: String
    /// False: the slug was there already, built from the same inputs.
    var built: Bool

    init(_ target: SlugDirectory, built: Bool) {
        slug = target.slug
        release = target.release
        record = target.record
        self.built = built
    }
}

/// HEAD of the work tree an app directory is in.
enum LocalCheckout {
    struct Head {
        var commit: String
        /// The work tree has changes under the app directory (tracked or untracked files).
        var dirty: Bool
    }

    static func head(of appDir: String, environment: [String: String]) throws -> Head {
        var env = environment
        for name in ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"] { env[name] = nil }
        // `git status` would otherwise refresh the index: reading the app must not write in it.
        env["GIT_OPTIONAL_LOCKS"] = "0"
        let notACheckout = MultipackError.usage(
            "--slug-dir names slugs by commit, and \(appDir) is not in a git work tree with a commit.",
            hint: "Commit the app to git, or give --slug FILE instead.")
        guard let commit = LocalBuild.sourceVersion(of: appDir, environment: env) else { throw notACheckout }
        let status = try Spawner.run(
            Command(
                "git", ["status", "--porcelain", "--untracked-files=all", "--ignore-submodules=none", "--", "."],
                in: appDir, environment: env))
        guard status.termination.succeeded else { throw notACheckout }
        return Head(commit: commit, dirty: !status.stdout.isEmpty)
    }
}

extension CachePurge {
    /// `multipack cache purge GIT_URL`: the repository's state (its cache, its commits' builds)
    /// and its mirror.
    func purge(_ repository: AppRepository) throws {
        let env = invocation.environment
        let targets = [repository.stateDirectory(environment: env), repository.mirrorDirectory(environment: env)]
            .filter { Files.lexists($0) }
        guard !targets.isEmpty else {
            invocation.log.step("Nothing to purge: multipack keeps nothing of \(repository.masked).")
            return
        }
        for target in targets { try Files.removeTree(target) }
        invocation.log.step(
            "Purged the cache and mirror of \(repository.masked): removed \(targets.joined(separator: " and "))")
    }
}
