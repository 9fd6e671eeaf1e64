/// `multipack lock [--check] [APP_DIR]` (SPEC §13): resolves every entry of `.buildpacks` and
/// writes `.buildpacks.lock`, or checks that the lock is still what the entries resolve to.
public struct Locker {
    public var appDir: String
    public var invocation: Invocation
    /// `--update`: only these entries are resolved again; the others keep their locked pins.
    public var updates: [String] = []

    public init(appDir: String, invocation: Invocation, updates: [String] = []) {
        self.appDir = Files.absolute(appDir)
        self.invocation = invocation
        self.updates = updates
    }

    var log: Log { invocation.log }

    /// Writes `.buildpacks.lock` and prints, one line per child, what changed since the last lock.
    public func write() throws {
        let listed = try listedEntries()
        let previous: LockFile?
        do {
            previous = try LockFile.load(appDir: appDir)
        } catch {
            // An unreadable lock is the one thing `multipack lock` is there to repair.
            log.warning("The previous \(LockFile.name) cannot be read; it is written again from scratch.")
            previous = nil
        }
        let earlier = previousPins(listed, previous: previous)
        if !updates.isEmpty {
            guard previous != nil else {
                throw MultipackError.usage(
                    "There is no \(LockFile.name) to update one buildpack of.",
                    hint: "Run `\(CommandName.line(["lock"]))` without --update to lock every buildpack.")
            }
            for name in updates where !listed.contains(where: { $0.isNamed(name) }) {
                throw MultipackError.usage(
                    "No line of .buildpacks is `\(Masking.url(name))`.",
                    hint: "Give --update the reference as .buildpacks writes it (without its options).")
            }
        }

        log.step("Locking \(listed.count) buildpack\(listed.count == 1 ? "" : "s") of \(appDir)/.buildpacks")
        // With --update, the others keep the pins they had (those without one are resolved).
        let keep: [Pin?] = listed.indices.map { index in
            updates.isEmpty || updates.contains { listed[index].isNamed($0) } ? nil : earlier[index]
        }
        let resolved = try resolve(listed) { keep[$0] == nil }
        let pins = listed.indices.map { keep[$0] ?? resolved[$0] }
        let lock = LockFile(entries: zip(listed, pins).map { $0.pinned($1) })
        try Files.write(lock.text, to: LockFile.path(inApp: appDir))

        var changed = 0
        for (index, entry) in lock.entries.enumerated() {
            let change: String
            switch (earlier[index], entry.pin) {
            case (_, nil):
                change = "local directory, not pinned"
            case (nil, let pin?):
                changed += previous == nil ? 0 : 1
                change = "\(pin)" + (previous == nil ? "" : " (new)")
            case (let old?, let pin?) where old == pin:
                change = "\(pin) (unchanged)"
            case (let old?, let pin?):
                changed += 1
                change = "\(old.kind) \(old.short) → \(pin.short)"
            }
            // The name is masked already; masking the line again would take the colon for part of a
            // query value.
            log.write("       \(listed[index].maskedText): \(change)\n", 1)
        }
        log.step(
            "Wrote \(LockFile.name) (\(lock.pinSummary)"
                + (previous == nil ? "" : ", \(changed) changed") + "): commit it with the app")
    }

    /// Exits 1 (a build failure naming the lines) unless the lock is current: present, the lock
    /// of `.buildpacks` as it is, and every floating entry still resolving to its pin.
    public func check() throws {
        let listed = try listedEntries()
        let lock: LockFile
        do {
            guard let found = try LockFile.load(appDir: appDir) else {
                throw MultipackError.build(
                    "There is no \(LockFile.name) in \(appDir).",
                    hint: "Run `\(CommandName.line(["lock"]))` and commit \(LockFile.name).")
            }
            lock = found
        } catch let unreadable as MultipackError where unreadable.kind == .usage {
            throw MultipackError.build(unreadable.headline, hint: unreadable.hint)
        }
        log.step("Checking \(LockFile.name) (\(lock.pinSummary))")
        var problems: [String] = []
        if let difference = lock.firstDifference(from: listed) {
            problems.append("\(difference) The lock is out of date with .buildpacks.")
        } else {
            for (entry, locked) in zip(listed, lock.entries) where entry.isPinnable && locked.pin == nil {
                problems.append(
                    ".buildpacks line \(entry.line), `\(entry.maskedText)`, has no pin in \(LockFile.name).")
            }
            // Only what floats can have moved; a pin .buildpacks itself holds cannot.
            let now = try resolve(listed) { listed[$0].isFloating && lock.entries[$0].pin != nil }
            for (index, entry) in listed.enumerated() {
                guard entry.isFloating, let locked = lock.entries[index].pin, let pin = now[index], pin != locked
                else { continue }
                problems.append(
                    ".buildpacks line \(entry.line), `\(entry.maskedText)`: the lock has \(locked); it now "
                        + "resolves to \(pin)")
            }
        }
        guard problems.isEmpty else {
            throw MultipackError.build(
                "\(LockFile.name) is not current:", details: problems,
                hint: "Run `\(CommandName.line(["lock"]))` and commit \(LockFile.name).")
        }
        log.step("\(LockFile.name) is current (\(lock.pinSummary))")
    }

    private func listedEntries() throws -> [BuildpackEntry] {
        guard Files.isDirectory(appDir) else {
            throw MultipackError.usage(
                "\(appDir) is not a directory.", hint: "Give multipack the path of your app's directory.")
        }
        let path = appDir + "/.buildpacks"
        guard Files.exists(path) else {
            throw MultipackError.usage(
                "There is no .buildpacks file in \(appDir).",
                hint: "List your buildpacks, one per line, in .buildpacks at the app's root.")
        }
        guard Files.isRegularFile(path) else {
            throw MultipackError.usage(".buildpacks in \(appDir) is not a regular file.")
        }
        let entries = try BuildpackList.parse(try Files.read(path), directory: appDir)
        guard !entries.isEmpty else {
            throw MultipackError.usage(
                ".buildpacks lists no buildpack.",
                hint: "List your buildpacks, one per line, in .buildpacks at the app's root.")
        }
        return entries
    }

    /// The previous lock's pin for each entry, matched by reference (the first not yet taken), so
    /// that a line moved up or down still shows what changed.
    private func previousPins(_ listed: [BuildpackEntry], previous: LockFile?) -> [Pin?] {
        var unused = previous?.entries ?? []
        return listed.map { entry in
            guard let index = unused.firstIndex(where: { $0.locks(entry) }) else { return nil }
            return unused.remove(at: index).pin
        }
    }

    /// The pin of each entry `wanted` picks, resolved now over the network (in parallel, as compile
    /// fetches): its own pin if it has one, nil for a local directory and for entries not wanted.
    private func resolve(_ entries: [BuildpackEntry], wanted: @escaping @Sendable (Int) -> Bool) throws -> [Pin?] {
        let settings = try Settings(configVars: [:], environment: invocation.environment)
        ScratchDirectory.sweepTemporaryRoot()
        let scratchDirectory = try ScratchDirectory(.lock)
        defer { scratchDirectory.remove() }
        let scratch = scratchDirectory.path
        var environment = invocation.environment
        environment["GIT_DIR"] = nil
        var context = FetchContext(
            appDir: appDir, cacheDir: nil, workDir: scratch, environment: environment, settings: settings)
        context.trace = log.tracer(settings.xtrace)
        let log = self.log
        context.progress = { line in log.write(line + "\n", 1) }
        let shared = context
        let outcomes = parallelMap(Array(entries.enumerated()), width: 4) { _, item in
            let (index, entry) = item
            return Result { () throws -> Pin? in
                try shared.stop.check()
                guard wanted(index) else { return nil }
                return try Self.resolve(entry, position: index + 1, total: entries.count, context: shared)
            }
        }
        return try outcomes.map { try $0.get() }
    }

    static func resolve(_ entry: BuildpackEntry, position: Int, total: Int, context: FetchContext) throws -> Pin? {
        if let pin = entry.pin { return pin }
        do {
            switch entry.reference {
            case .directory:
                return nil
            case .git(let url, let ref):
                let git = GitFetch(
                    url: Fetcher.localOrRemote(url, appDir: context.appDir), ref: ref, context: context)
                return .commit(try git.resolveCommit())
            case .archive(let url):
                return .sha256(try digest(of: url, position: position, context: context))
            case .registry(let namespace, let name):
                let url = "\(context.settings.registryURL)/\(namespace)/\(name).tgz"
                return .sha256(try digest(of: url, position: position, context: context))
            }
        } catch let stopped as StopRequested {
            throw MultipackError(stopped)
        } catch let error as MultipackError where error.isInterrupted {
            throw error
        } catch {
            let problem =
                error as? FetchProblem ?? (error as? HTTPError).map { FetchProblem($0.description) }
                ?? FetchProblem("\(error)")
            throw MultipackError.build(
                "Could not resolve buildpack [\(position)/\(total)] \(entry.maskedText)",
                details: ["Stage: lock", "Reason: \(problem.message)"] + (problem.output.map { ["", $0] } ?? []),
                hint: problem.hint)
        }
    }

    /// The SHA-256 of the archive the URL serves now: downloaded, digested, thrown away.
    private static func digest(of url: String, position: Int, context: FetchContext) throws -> String {
        let path = context.workDir + "/archive-\(position)"
        defer { Files.remove(path) }
        context.trace(Command("curl", [Masking.url(url)], environment: [:]))
        // The limits and checks of compile's own downloads (deadline, stall, size, HTML pages).
        _ = try context.download(context.archiveRequest(url), to: path)
        try context.stop.check()
        return try sha256Hex(ofFile: path)
    }
}

extension Pin {
    var kind: String {
        switch self {
        case .commit: "commit"
        case .sha256: "sha256"
        }
    }

    /// The value, cut to twelve digits: `ab12cd34ef56…`.
    var short: String {
        switch self {
        case .commit(let value), .sha256(let value): "\(value.prefix(12))…"
        }
    }
}

extension BuildpackEntry {
    /// `--update NAME` names this entry: its reference as written, masked or not.
    func isNamed(_ name: String) -> Bool {
        if name == text || name == maskedText { return true }
        if case .registry(let namespace, let name2) = reference {
            return name == "\(namespace)/\(name2)" || name == "urn:buildpack:\(namespace)/\(name2)"
        }
        return false
    }
}
