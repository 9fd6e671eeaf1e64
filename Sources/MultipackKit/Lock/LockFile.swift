import Glibc

/// What a lock entry holds beside the reference: the exact version a build fetches.
enum Pin: Equatable, Sendable, CustomStringConvertible {
    case commit(String)
    case sha256(String)

    var description: String {
        switch self {
        case .commit(let commit): "commit \(commit.prefix(12))…"
        case .sha256(let digest): "sha256 \(digest.prefix(12))…"
        }
    }

    var option: String {
        switch self {
        case .commit(let commit): "commit=\(commit)"
        case .sha256(let digest): "sha256=\(digest)"
        }
    }
}

extension BuildpackEntry {
    var pin: Pin? { commit.map(Pin.commit) ?? sha256.map(Pin.sha256) }

    /// What pins this entry, as a mismatch names it: `commit 0a1b2c3d4e5f…` (from `#REF` or
    /// `commit=`), `sha256 …`, or `nothing`.
    var pinText: String {
        var pins: [String] = []
        if case .git(_, let ref?) = reference, ref.count == 40, ref.allSatisfy(\.isHexDigit) {
            pins.append("#\(ref.prefix(12))…")
        }
        if let pin { pins.append(pin.description) }
        return pins.isEmpty ? "nothing" : pins.joined(separator: " and ")
    }

    /// Git entries and archives can be pinned; a local directory is part of the app.
    var isPinnable: Bool {
        if case .directory = reference { return false }
        return true
    }

    /// A git ref that is not a full commit, or an archive without a digest: what upstream holds
    /// today, which may not be what it held yesterday.
    var isFloating: Bool {
        switch reference {
        case .directory: false
        case .git(_, let ref): commit == nil && !(ref.map { $0.count == 40 && $0.allSatisfy(\.isHexDigit) } ?? false)
        case .archive, .registry: sha256 == nil
        }
    }

    /// The entry with its pin set; a pin `.buildpacks` already has is kept as it is.
    func pinned(_ pin: Pin?) -> BuildpackEntry {
        var entry = self
        switch pin {
        case .commit(let commit)?: entry.commit = commit
        case .sha256(let digest)?: entry.sha256 = digest
        case nil: break
        }
        return entry
    }

    /// This lock entry is that `.buildpacks` entry: the same reference, and any pin `.buildpacks`
    /// itself holds is the lock's too.
    func locks(_ listed: BuildpackEntry) -> Bool {
        guard text == listed.text else { return false }
        if let digest = listed.sha256, digest != sha256 { return false }
        if let commit = listed.commit, commit != self.commit { return false }
        if case .git(_, let ref?) = reference, ref.count == 40, ref.allSatisfy(\.isHexDigit),
            let commit, commit != ref.lowercased()
        {
            return false
        }
        return true
    }
}

/// `.buildpacks.lock` (SPEC §13): the entries of `.buildpacks`, in order, each with its pin
/// (`commit=` or `sha256=`), so the one parser of `.buildpacks` reads it.
public struct LockFile: Sendable {
    static let name = ".buildpacks.lock"
    static let header =
        "# Written by `multipack lock`: the buildpacks of .buildpacks, each pinned. Commit this file with the app."

    var entries: [BuildpackEntry]

    var pinnedCount: Int { entries.filter { $0.pin != nil }.count }
    var localCount: Int { entries.filter { !$0.isPinnable }.count }

    /// "2 of 2 pinned", and the local directories, which are never pinned.
    var pinSummary: String {
        "\(pinnedCount) of \(entries.count) pinned"
            + (localCount == 0 ? "" : ", \(localCount) local director\(localCount == 1 ? "y" : "ies")")
    }

    static func path(inApp appDir: String) -> String { appDir + "/" + name }

    /// A lock is a line per buildpack: anything near this is not one.
    static let maxBytes = 1 << 20

    /// The lock's text, nil when there is none. A symlink out of the app is never followed: the
    /// lines of what it points at would be echoed in the error about them.
    private static func read(appDir: String) throws -> String? {
        let path = path(inApp: appDir)
        guard Files.lexists(path) else { return nil }
        do {
            return String(decoding: try Files.readInApp(path, root: appDir, limit: maxBytes), as: UTF8.self)
        } catch let error as FileError where error.detail != nil {
            throw MultipackError.usage(
                "The app's \(name) " + (error.errno == EFBIG ? "cannot be read: " : "is ") + error.detail! + ".",
                hint: "Remove it, then run `\(CommandName.line(["lock"]))`.")
        }
    }

    /// The app's lock, or nil when it has none. `directory` is what bare relative paths are
    /// relative to, as for `.buildpacks` (the original app of a local build).
    static func load(appDir: String, directory: String? = nil) throws -> LockFile? {
        guard let text = try read(appDir: appDir) else { return nil }
        do {
            return LockFile(entries: try BuildpackList.parse(text, directory: directory ?? appDir))
        } catch let problem {
            throw MultipackError.usage(
                "Your \(name) has a line multipack cannot read.\nLine \(problem.line): \(problem.text)\n"
                    + problem.reason.prefix(1).uppercased() + problem.reason.dropFirst() + ".",
                hint: "Run `\(CommandName.line(["lock"]))` to write it again.")
        }
    }

    /// The file's text: the header, then one line per entry, reference first, pin after.
    var text: String {
        ([Self.header]
            + entries.map { entry in ([entry.text] + (entry.pin.map { [$0.option] } ?? [])).joined(separator: " ") })
            .joined(separator: "\n") + "\n"
    }

    /// Why the lock is not the lock of `listed`, naming the first line that differs; nil when it is.
    func firstDifference(from listed: [BuildpackEntry]) -> String? {
        for index in 0..<max(entries.count, listed.count) {
            switch (index < listed.count ? listed[index] : nil, index < entries.count ? entries[index] : nil) {
            case (let entry?, let locked?) where locked.locks(entry):
                continue
            case (let entry?, let locked?) where locked.text == entry.text:
                // The same reference, pinned differently: the pins are what differ.
                return ".buildpacks line \(entry.line), `\(entry.maskedText)`, pins \(entry.pinText), but "
                    + "\(Self.name) line \(locked.line) pins \(locked.pinText)."
            case (let entry?, let locked?):
                return ".buildpacks line \(entry.line) is `\(entry.maskedText)`, but \(Self.name) line \(locked.line) "
                    + "is `\(locked.maskedText)`."
            case (let entry?, nil):
                return ".buildpacks line \(entry.line), `\(entry.maskedText)`, is not in \(Self.name)."
            case (nil, let locked?):
                return "\(Self.name) line \(locked.line), `\(locked.maskedText)`, is no longer in .buildpacks."
            case (nil, nil):
                continue
            }
        }
        return nil
    }

    /// The entries compile fetches: `.buildpacks`' own, each with the lock's pin. A lock that is
    /// not `.buildpacks`' is refused, as `npm ci` refuses a stale lock.
    func pinning(_ listed: [BuildpackEntry]) throws(MultipackError) -> [BuildpackEntry] {
        if let difference = firstDifference(from: listed) {
            throw MultipackError.usage(
                "\(Self.name) does not match .buildpacks.\n\(difference)",
                hint:
                    "Run `\(CommandName.line(["lock"]))` to lock the buildpacks .buildpacks lists now, and commit \(Self.name)."
            )
        }
        return zip(listed, entries).map { entry, locked in
            var entry = entry
            if entry.pin == nil, let pin = locked.pin {
                entry = entry.pinned(pin)
                entry.pinnedByLock = true
            }
            return entry
        }
    }
}
