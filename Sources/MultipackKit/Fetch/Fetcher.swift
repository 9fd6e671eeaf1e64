import Glibc
import Synchronization

/// A child buildpack on disk, ready to run.
public struct FetchedChild: Sendable {
    public var entry: BuildpackEntry
    /// A private, writable copy outside BUILD_DIR.
    public var directory: String
    /// The resolved version: a commit, an archive digest, or "local directory".
    public var version: String
    /// How it was obtained: "cloned", "cached", "copied", "cached (network failed)", "downloaded".
    public var source: String
    public var seconds: Double
    public var warnings: [String] = []
}

/// What fetching needs to know about this build.
public struct FetchContext: Sendable {
    /// Relative paths in `.buildpacks` are relative to the app root.
    public var appDir: String
    /// CACHE_DIR; multipack keeps its own cache under `.multipack/` only.
    public var cacheDir: String?
    /// The build's private directory for the children.
    public var workDir: String
    public var environment: [String: String]
    public var settings: Settings
    public var trace: @Sendable (Command) -> Void = { _ in }
    /// Progress lines of long downloads.
    public var progress: @Sendable (String) -> Void = { _ in }
    /// Warnings that concern the whole fetch (a cache that cannot be used).
    public var warn: @Sendable (String) -> Void = { _ in }
    /// CACHE_DIR/.multipack once checked; nil when there is no cache or it cannot be written.
    var cache: CacheStore?
    /// The build's files, processes, HTTP, clock and stop token.
    public var build: BuildContext
    /// Whether the build no longer needs this fetch (another one failed): downloads in flight and
    /// git's processes stop.
    public var isCancelled: @Sendable () -> Bool = { false }
    var stop: StopToken { build.stop }
    /// How many children are fetched at once (`MULTIPACK_FETCH_PARALLELISM`, for benchmarks).
    public var parallelism = 4
    /// How long a download may receive nothing before it counts as stalled.
    public var stallWindow: Duration = .seconds(30)

    public init(
        appDir: String, cacheDir: String?, workDir: String, environment: [String: String], settings: Settings,
        build: BuildContext = .production
    ) {
        self.build = build
        self.appDir = appDir
        self.cacheDir = cacheDir
        self.workDir = workDir
        self.environment = environment
        self.settings = settings
        if let seconds = environment[HiddenVariable.stallSeconds].flatMap(Int.init), seconds > 0 {
            stallWindow = .seconds(seconds)
        }
    }

    /// A download of a buildpack archive, with this build's limits.
    func archiveRequest(_ url: String, ifNoneMatch: String? = nil, ifModifiedSince: String? = nil) -> DownloadRequest {
        DownloadRequest(
            url: url, ifNoneMatch: ifNoneMatch, ifModifiedSince: ifModifiedSince,
            timeout: .seconds(settings.fetchTimeout), stallWindow: stallWindow, maxBytes: settings.maxDownload,
            expectsArchive: true)
    }

    /// Downloads with progress lines and retry notices in the log.
    func download(_ request: DownloadRequest, to path: String) throws -> DownloadResult {
        let progress = self.progress
        return try build.http.download(
            request, to: path, stop: stop, isCancelled: isCancelled, progress: { progress($0.line) },
            notice: { progress("       " + $0) })
    }

    var cacheRoot: String? { cache?.root }

    /// Checks the cache before the fetches start: a CACHE_DIR that cannot be written means a build
    /// without the cache, with a warning, never a failed build (SPEC §5).
    mutating func openCache() {
        guard let cacheDir, cache == nil else { return }
        switch CacheStore.open(cacheDir: cacheDir) {
        case .success(let store):
            cache = store
        case .failure(let problem):
            warn(
                "The cache cannot be used (\(problem)): this build fetches every buildpack and keeps nothing. "
                    + "Check that CACHE_DIR is writable.")
        }
    }
}

/// Fetches every child before the first one runs (SPEC §5): in parallel, the results in list order.
public enum Fetcher {
    public static func fetchAll(_ entries: [BuildpackEntry], context: FetchContext) throws -> [FetchedChild] {
        struct Cancelled: Error {}
        let failed = Atomic<Bool>(false)
        var context = context
        context.openCache()
        // Once one fetch has failed the build cannot run: downloads in flight are abandoned and
        // the fetches not yet started are not started (SPEC §5).
        let cancelled = context.isCancelled
        context.isCancelled = { cancelled() || failed.load(ordering: .relaxed) }
        let outcomes = parallelMap(entries, width: context.parallelism) { [context] index, entry in
            if failed.load(ordering: .relaxed) { return Result<FetchedChild, any Error>.failure(Cancelled()) }
            let outcome = Result { () throws -> FetchedChild in
                try context.stop.check("while fetching the buildpacks")
                return try fetch(entry, position: index + 1, total: entries.count, context: context)
            }
            if case .failure(let error) = outcome, (error as? MultipackError)?.isInterrupted != true {
                // A failure that follows another is the cancellation's doing, not a cause.
                if failed.exchange(true, ordering: .relaxed) { return .failure(Cancelled()) }
            }
            return outcome
        }
        Spawner.stopLeftovers(owner: "Fetching the buildpacks")
        // The first real failure in list order is the one reported.
        for case .failure(let error) in outcomes where !(error is Cancelled) { throw error }
        return try outcomes.map { try $0.get() }
    }

    static func fetch(_ entry: BuildpackEntry, position: Int, total: Int, context: FetchContext) throws -> FetchedChild
    {
        let start = context.build.clock.now
        let directory = context.workDir + "/\(position)"
        var child: FetchedChild
        do {
            switch entry.reference {
            case .git(let url, let ref):
                // A locked commit is fetched as if the ref were that commit: cached, it needs no network.
                var git = GitFetch(
                    url: localOrRemote(url, appDir: context.appDir), ref: entry.commit ?? ref, context: context)
                git.lockedRef = entry.commit == nil ? nil : ref
                git.pinnedByLock = entry.pinnedByLock
                let (version, source, warnings) = try git.fetch(into: directory)
                child = FetchedChild(
                    entry: entry, directory: directory, version: version, source: source, seconds: 0, warnings: warnings
                )
            case .directory(let path):
                let source = Files.join(context.appDir, path)
                guard Files.isDirectory(source) else {
                    throw FetchProblem("the directory \(source) does not exist")
                }
                try Files.copyTree(source, to: directory)
                GitFetch.removeGitDirectories(in: directory)
                child = FetchedChild(
                    entry: entry, directory: directory, version: "local directory", source: "copied", seconds: 0)
            case .archive(let url):
                let archive = ArchiveFetch(
                    url: url, pin: entry.sha256, pinnedByLock: entry.pinnedByLock, context: context)
                let (version, source, warnings) = try archive.fetch(into: directory)
                child = FetchedChild(
                    entry: entry, directory: directory, version: version, source: source, seconds: 0, warnings: warnings
                )
            case .registry(let namespace, let name):
                let url = context.settings.registryArchiveURL(namespace: namespace, name: name)
                let archive = ArchiveFetch(
                    url: url, pin: entry.sha256, pinnedByLock: entry.pinnedByLock, context: context)
                let (version, source, warnings) = try archive.fetch(into: directory)
                child = FetchedChild(
                    entry: entry, directory: directory, version: version, source: source, seconds: 0, warnings: warnings
                )
            }
        } catch let stopped as StopRequested {
            // "while downloading" (or extracting, or nothing said: fetching) which buildpack.
            throw MultipackError.interrupted(
                stopped.signal,
                "\(stopped.phase ?? "while fetching") buildpack [\(position)/\(total)] \(entry.maskedText)")
        } catch let error as MultipackError where error.isInterrupted {
            throw error
        } catch {
            let problem = error as? FetchProblem ?? FetchProblem(MultipackError.reason(error))
            throw MultipackError.build(
                "Failed to fetch buildpack [\(position)/\(total)] \(entry.maskedText)",
                details: ["Stage: fetch", "Reason: \(problem.message)"] + (problem.output.map { ["", $0] } ?? []),
                hint: problem.hint)
        }
        Files.makeExecutable(inDirectory: directory + "/bin")
        child.seconds = context.build.seconds(since: start)
        return child
    }

    /// Paths in `.buildpacks` are relative to the app root; URLs are left alone.
    static func localOrRemote(_ url: String, appDir: String) -> String {
        if url.hasPrefix("/") || url.hasPrefix("./") || url.hasPrefix("../") || url == "." || url == ".." {
            return Files.join(appDir, url)
        }
        return url
    }
}

/// Why a fetch failed, before it is turned into the build's failure block.
struct FetchProblem: Error {
    var message: String
    var output: String?
    var hint: String?

    init(_ message: String, output: String? = nil, hint: String? = nil) {
        self.message = message
        self.output = output
        self.hint = hint
    }
}
