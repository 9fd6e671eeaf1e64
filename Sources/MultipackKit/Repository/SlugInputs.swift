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
        let choice = options.stackChoice
        let root: String
        if let path = choice.rootPath(environment) {
            root =
                StackRoot.realPath(path) == "/" || Files.absolute(path) == "/"
                ? Self.thisMachine : "--stack-root " + Files.absolute(path)
        } else if let image = try? choice.image.map({ text throws(MultipackError) in
            try ImageReference(parsing: text, environment: environment)
        })
            ?? ImageReference.forStack(choice.stack, role: .build, environment: environment)
        {
            root = "image " + image.shown
        } else {
            root = Self.thisMachine
        }
        return SlugRecord.Stack(name: options.stack, root: root, digest: nil)
    }

    /// The stack and the root the build stood on, as its summary says (an image with its digest;
    /// this machine when the stack's image could not be had offline).
    static func stack(_ record: BuildRoot.Record?, options: LocalBuildOptions, before: SlugRecord.Stack)
        -> SlugRecord.Stack
    {
        guard let record else { return before }
        switch record.kind {
        case "image":
            return SlugRecord.Stack(name: options.stack, root: "image " + (record.image ?? ""), digest: record.digest)
        case BuildRoot.thisMachine: return SlugRecord.Stack(name: options.stack, root: thisMachine, digest: nil)
        default: return SlugRecord.Stack(name: options.stack, root: before.root, digest: nil)
        }
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
