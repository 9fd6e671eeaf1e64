import Glibc

/// What goes into a commit's slug besides the commit (SPEC §19), read the same way before a
/// build (to tell whether the slug filed already is this one) and after it (for its record).
struct SlugInputs {
    var options: LocalBuildOptions
    /// The app's files: a checkout of the commit, or the local work tree.
    var appDir: String
    /// Where `multipack build` was started: `--buildpack` paths are relative to it.
    var callerDir: String
    var environment: [String: String]
    var context: BuildContext

    /// The stack and its root as the options choose them, before a build: the image by its name
    /// (its digest is known once it is pulled), a root by its path, or this machine.
    var stack: SlugRecord.Stack {
        let root: String
        if let path = options.stackChoice.rootPath(environment) {
            let isThisMachine = StackRoot.realPath(path) == "/" || Files.absolute(path) == "/"
            root = isThisMachine ? Self.thisMachine : "--stack-root " + Files.absolute(path)
        } else if let image = try? image() {
            root = "image " + image.shown
        } else {
            root = Self.thisMachine
        }
        return SlugRecord.Stack(name: options.stack, root: root, digest: nil)
    }

    /// The image the build stands on: `--stack-image`, or the stack's build image.
    private func image() throws(MultipackError) -> ImageReference {
        let choice = options.stackChoice
        if let named = choice.image { return try ImageReference(parsing: named, environment: environment) }
        return try ImageReference.forStack(choice.stack, role: .build, environment: environment)
    }

    /// The digest the stack's image has now, as the build would find it (one manifest request
    /// when the cache has it; pulled when it does not, as the build would pull it); nil when the
    /// root is no image or the image cannot be had.
    func currentDigest() -> String? {
        guard options.stackChoice.rootPath(environment) == nil, let image = try? image() else { return nil }
        let quiet = Log { _, _ in }
        guard var puller = try? StackPuller(environment: environment, log: quiet) else { return nil }
        puller.limits.retriesUnreachableRegistry = false
        return try? puller.image(image).digest
    }

    /// The stack and the root as `stack` names them, with what the build's summary says of the
    /// root it stood on: the image's digest, or that the stack's image could not be had offline
    /// and the build stood on this machine instead.
    static func stack(_ record: BuildRoot.Record?, before: SlugRecord.Stack) -> SlugRecord.Stack {
        var stack = before
        stack.digest = record?.digest
        if record?.offlineFallback == true { stack.offlineFallback = true }
        return stack
    }

    static let thisMachine = "this machine's /"

    /// The buildpacks the build runs, as a build chooses them (`--buildpack`, `.buildpacks` with
    /// its lock's pins, or app.json's list), with the directory their relative paths are relative to.
    func entries() throws -> (entries: [BuildpackEntry], base: String) {
        let commandLine = try StagesJob.entries(options.buildpacks, directory: callerDir)
        if !commandLine.isEmpty { return (commandLine, callerDir) }
        if Files.exists(appDir + "/.buildpacks") {
            let listed = try BuildpackList.load(appDir + "/.buildpacks", directory: appDir)
            let lock = try LockFile.load(appDir: appDir, directory: appDir)
            return (try lock?.pinning(listed) ?? listed, appDir)
        }
        let choice = try BuildpackChoice.choose(
            commandLine: [], ci: false, appJSON: try? AppJSON.read(appDir + "/app.json"), listed: nil, appDir: appDir)
        return (choice.entries, appDir)
    }

    /// The version each buildpack resolves to now, as a build would record it; nil when one
    /// cannot be resolved (the network is down): the slug is then built again rather than trusted.
    func resolved(settings: Settings) throws -> [SlugRecord.Buildpack]? {
        let (entries, base) = try entries()
        let scratchDirectory = try ScratchDirectory(.lock)
        defer { scratchDirectory.remove() }
        var fetchEnvironment = environment
        fetchEnvironment["GIT_DIR"] = nil
        let fetch = FetchContext(
            appDir: base, cacheDir: nil, workDir: scratchDirectory.path, environment: fetchEnvironment,
            settings: settings, build: context)
        var resolved: [SlugRecord.Buildpack] = []
        for (index, entry) in entries.enumerated() {
            let version: String
            if case .directory(let path) = entry.reference {
                guard let digest = Self.treeVersion(Files.join(base, path)) else { return nil }
                version = digest
            } else {
                do {
                    switch try Locker.resolve(entry, position: index + 1, total: entries.count, context: fetch) {
                    case .commit(let commit)?: version = commit
                    case .sha256(let digest)?: version = "sha256:" + digest
                    case nil: return nil
                    }
                } catch let error as MultipackError where error.isInterrupted {
                    throw error
                } catch {
                    context.log.detail("(\(entry.maskedText) could not be resolved: \(MultipackError(error).headline))")
                    return nil
                }
            }
            resolved.append(SlugRecord.Buildpack(url: entry.maskedText, version: version))
        }
        return resolved
    }

    /// The buildpacks as the build recorded them, a local directory by the digest of its files.
    func recorded(_ children: [LocalBuildSummary.Child]) -> [SlugRecord.Buildpack] {
        let listed = try? entries()
        return children.map { child in
            var version = child.version
            if version == "local directory", let listed, child.position >= 1, child.position <= listed.entries.count,
                case .directory(let path) = listed.entries[child.position - 1].reference
            {
                version = Self.treeVersion(Files.join(listed.base, path)) ?? version
            }
            return SlugRecord.Buildpack(url: child.url, version: version)
        }
    }

    /// `tree:<sha256>` of a directory's files: each one's path, kind, executable bit and contents
    /// (a link's target), `.git` left out (git rewrites it as it likes). Nil when it cannot be read.
    static func treeVersion(_ directory: String) -> String? {
        var lines: [String] = []
        var pending = [""]
        while let relative = pending.popLast() {
            let path = relative.isEmpty ? directory : directory + "/" + relative
            for name in Files.list(path) where !(relative.isEmpty && name == ".git") {
                let entry = relative.isEmpty ? name : relative + "/" + name
                var info = stat()
                guard lstat(directory + "/" + entry, &info) == 0 else { return nil }
                switch info.st_mode & S_IFMT {
                case S_IFDIR:
                    lines.append("d \(entry)")
                    pending.append(entry)
                case S_IFLNK:
                    lines.append("l \(entry) \(Sandbox.symlinkTarget(directory + "/" + entry) ?? "")")
                case S_IFREG:
                    guard let digest = try? sha256Hex(ofFile: directory + "/" + entry) else { return nil }
                    lines.append("\(info.st_mode & 0o111 != 0 ? "x" : "f") \(entry) \(digest)")
                default:
                    lines.append("o \(entry)")
                }
            }
        }
        let text = lines.sorted().joined(separator: "\n")
        return (try? sha256Hex(of: Array(text.utf8))).map { "tree:" + $0 }
    }
}
