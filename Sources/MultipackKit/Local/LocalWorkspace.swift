import FoundationEssentials
import Glibc

/// Where one local build happens (SPEC §12): the app's state directory (`build`'s or `ci`'s),
/// locked for the build's time, a fresh copy of the app as `build_<hex>` (`.slugignore`
/// applied), the cache and the config vars. While the build runs, the build directory and the
/// cache live in the build's own /tmp, so that renames between them and TMPDIR stay on one mount
/// as on Heroku; the cache goes back where it is kept, and the build directory is staged to be
/// kept (`stage`) only when the build succeeded. The kept build is never touched here.
struct LocalWorkspace {
    let state: LocalState.App
    /// `build_<hex>`: the build directory's name, `/tmp/build_<hex>` inside.
    let id: String
    /// The build directory and the app's cache while the build runs.
    let running: (build: String, cache: String)
    /// The cache as the build uses it outside the namespace: the app's own (moved to `running.cache`
    /// meanwhile), `--cache DIR`, or a throwaway one at `running.cache`.
    private(set) var cache = ""
    /// The app's cache goes back where it is kept when the build ends (not `--cache`, not `--no-cache`).
    let keepsCache: Bool
    private let lock: Int32
    /// Removes what a killed build left, and what the build replaced once it is published.
    let trash: SerialWork

    /// Takes the app's lock and puts a killed build's scratch aside (removed while this one runs:
    /// removing a real app's build, 7,000 files, takes seconds on a slow disk).
    init(options: LocalBuildOptions, caller: [String: String], ci: Bool) throws {
        state = LocalState.App(options: options, environment: caller, ci: ci)
        lock = try state.begin()
        trash = SerialWork()
        let statePath = state.path
        trash.add { LocalState.App.removeReplaced(in: statePath) }
        id = "build_" + LocalBuild.randomHex()
        running = (build: state.work + "/tmp/" + id, cache: state.work + "/tmp/codon/tmp/cache")
        keepsCache = !options.noCache && options.cacheDir == nil
    }

    /// Copies the app into the build directory and readies the cache and the config vars.
    mutating func fill(
        options: LocalBuildOptions, configVars: [(key: String, value: String)], applySlugIgnore: Bool,
        context: BuildContext
    ) throws {
        try context.files.makeDirectory(running.build)
        try Self.copyApp(options.appDir, to: running.build, log: context.log)
        if applySlugIgnore { Self.applySlugIgnore(running.build, log: context.log) }
        cache = try Self.prepareCache(options, state, running: running.cache, log: context.log)
        for (name, value) in configVars {
            try context.files.write(value, to: state.next.env + "/" + name, mode: LocalState.privateFileMode)
        }
    }

    /// Puts the app's cache where it is kept, removes the scratch (and a build directory that
    /// was not staged) and lets go of the app. Once asked to stop, multipack exits at once: the
    /// next build removes what is left.
    func close(stopped: Bool) {
        finish()
        state.removeScratch()
        if !stopped { trash.finish() }
        Glibc.close(lock)
    }

    /// Puts the app's cache back where it is kept; again is harmless.
    func finish() {
        state.finish(cache: keepsCache ? running.cache : nil)
    }

    /// The build succeeded: its directory joins what is staged to be kept.
    func stage() throws {
        try Files.move(running.build, to: state.next.build)
    }

    /// The app's files, except `.git` (Heroku builds the pushed tree, not the repository), owned
    /// by the caller whoever owns the originals.
    private static func copyApp(_ appDir: String, to buildDir: String, log: Log) throws {
        var skipped: [String] = []
        for name in Files.list(appDir) where name != ".git" {
            do {
                skipped += try Files.copyTree(appDir + "/" + name, to: buildDir + "/" + name)
                    .map { $0.hasPrefix("/") ? name : name + "/" + $0 }
            } catch let stopped as StopRequested {
                throw MultipackError.interrupted(
                    stopped.signal, "while the app was copied into the build directory")
            } catch {
                throw MultipackError.build(
                    "Could not copy the app into the build directory: \(appDir)/\(name)",
                    details: [MultipackError.reason(error)],
                    hint: "Check that every file in the app is readable and that \(buildDir) has room.")
            }
        }
        // Sockets and FIFOs are not files a slug can hold; opening a FIFO would block the build.
        for path in skipped.prefix(20) {
            log.detail("Skipped \(path): a socket, FIFO or device is not copied into the build.")
        }
        if skipped.count > 20 { log.detail("Skipped \(skipped.count - 20) more sockets, FIFOs or devices.") }
    }

    private static func applySlugIgnore(_ buildDir: String, log: Log) {
        guard let text = try? Files.read(buildDir + "/.slugignore") else { return }
        let removed = SlugIgnore(text).apply(to: buildDir)
        log.step("Deleting \(removed.count) file\(removed.count == 1 ? "" : "s") matching .slugignore patterns.")
        for path in removed.prefix(20) { log.detail("- \(path)") }
        if removed.count > 20 { log.detail("(and \(removed.count - 20) more)") }
    }

    /// The cache's directory outside the build; the app's own cache is moved to `running` for
    /// the build's time, a throwaway one is made there.
    private static func prepareCache(
        _ options: LocalBuildOptions, _ state: LocalState.App, running: String, log: Log
    ) throws -> String {
        if options.noCache {
            try Files.makeDirectory(running)
            log.step("Using a throwaway cache (--no-cache): every buildpack starts cold")
            return running
        }
        if let dir = options.cacheDir {
            let cache = Files.absolute(dir)
            try Files.makeDirectory(cache)
            log.step("Using the cache in \(cache) (--cache)")
            return cache
        }
        try Files.makeDirectory(state.cache)
        try Files.makeDirectory(String(running[..<running.lastIndex(of: "/")!]))
        guard rename(state.cache, running) == 0 else {
            // The commits of one repository share a cache; a build of another commit has it now.
            guard errno == ENOENT else { throw FileError(path: state.cache, action: "move", errno: errno) }
            try Files.makeDirectory(running)
            log.step("Using an empty cache: another build of this app has \(state.cache) now")
            return running
        }
        log.step("Using the cache in \(state.cache)")
        log.detail(
            "(kept between builds of this app; `\(CommandName.line(["cache", "purge", options.origin?.name ?? options.appDir]))` empties it)"
        )
        return state.cache
    }
}
