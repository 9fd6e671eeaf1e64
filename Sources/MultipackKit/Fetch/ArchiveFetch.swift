import Glibc

/// A child published as a tarball (an archive URL or a registry name): downloaded through libcurl,
/// verified against its `sha256=` pin, extracted in-process, and cached (SPEC §4–§6).
///
/// Cache layout, under CACHE_DIR/.multipack/ (see `CacheStore`):
///   archives/<sha256>.archive  the archive itself, named by its digest and checked against it on
///                              every use, so that nothing changed on disk runs under a pin
///   urls/<key of URL>          what the URL served last: masked url, ETag, Last-Modified, digest,
///                              and the digest of the full URL (credentials never stored)
///   staging/<pid>-<random>/    downloads in progress, on the cache's own filesystem
struct ArchiveFetch {
    var url: String
    var pin: String?
    /// The pin is `.buildpacks.lock`'s: a mismatch means upstream changed since `multipack lock`.
    var pinnedByLock = false
    var context: FetchContext

    var masked: String { Masking.url(url) }

    struct Remembered {
        var etag: String?
        var lastModified: String?
        var digest: String

        static func load(_ path: String, url: String) -> Remembered? {
            guard let text = CacheStore.readRecord(path) else { return nil }
            let fields = text.lines.map(String.init)
            guard fields.count >= 5, CacheStore.isDigest(fields[3]), fields[4] == (try? sha256Hex(of: Array(url.utf8)))
            else { return nil }
            return Remembered(
                etag: fields[1].isEmpty ? nil : fields[1], lastModified: fields[2].isEmpty ? nil : fields[2],
                digest: fields[3])
        }

        func text(url: String) throws -> String {
            let lines = [Masking.url(url), etag ?? "", lastModified ?? "", digest, try sha256Hex(of: Array(url.utf8))]
            // A header value holding a newline would shift the fields.
            return lines.map { $0.filter { $0 != "\n" && $0 != "\r" } }.joined(separator: "\n") + "\n"
        }
    }

    typealias Fetched = (version: String, source: String, warnings: [String])

    func fetch(into directory: String) throws -> Fetched {
        guard let store = context.cache else { return try download(into: directory, store: nil, remembered: nil) }
        var warnings: [String] = []

        // A pinned digest that is cached needs no request at all.
        if let pin {
            switch store.verifiedArchive(pin) {
            case .valid(let archive):
                if (try? install(archive, into: directory)) != nil {
                    return ("sha256:\(pin)", "cached", [])
                }
                store.drop(pin)
                warnings.append(
                    "The cached archive sha256:\(pin.prefix(12)) could not be extracted; it was dropped and is fetched again."
                )
            case .changed(let why):
                warnings.append(Self.changedWarning(pin, why))
            case .missing:
                break
            }
        }
        let record = store.recordPath(for: url)
        var remembered = Remembered.load(record, url: url)
        if let known = remembered, pin == nil {
            switch store.verifiedArchive(known.digest) {
            case .valid: break
            case .changed(let why):
                warnings.append(Self.changedWarning(known.digest, why))
                remembered = nil
            case .missing:
                remembered = nil
            }
        }
        do {
            var result = try download(into: directory, store: store, remembered: pin == nil ? remembered : nil)
            result.warnings = warnings + result.warnings
            return result
        } catch let problem as HTTPError where problem.isTransient {
            // A flaky network must not fail a build that needs nothing new.
            guard pin == nil, let usable = remembered, case .valid(let archive) = store.verifiedArchive(usable.digest)
            else { throw FetchProblem(problem.description) }
            try install(archive, into: directory)
            return (
                "sha256:\(usable.digest)", "cached (network failed)",
                warnings + [
                    "Could not reach \(masked) (\(problem.description)); using the cached copy \(usable.digest.prefix(12))."
                ]
            )
        } catch let problem as HTTPError {
            if problem.kind == .stopped { try context.stop.check(phase: "while downloading") }
            throw FetchProblem(problem.description, hint: hint(for: problem))
        }
    }

    static func changedWarning(_ expected: String, _ why: String) -> String {
        "The cached archive sha256:\(expected.prefix(12)) was changed on disk (\(why)); it was dropped and is "
            + "fetched again. Something that can write to CACHE_DIR (a buildpack?) altered it."
    }

    /// Downloads (or revalidates) and installs the archive, remembering what the URL served.
    private func download(into directory: String, store: CacheStore?, remembered: Remembered?) throws -> Fetched {
        // Staged on the cache's filesystem when there is a cache, so that keeping it is a rename.
        let stagingDirectory = try store?.stagingDirectory() ?? ScratchDirectory(.archive)
        defer { stagingDirectory.remove() }
        let staging = stagingDirectory.path
        let request = context.archiveRequest(
            url, ifNoneMatch: remembered?.etag, ifModifiedSince: remembered?.lastModified)
        context.trace(Command("curl", [masked], environment: [:]))
        let result = try context.download(request, to: staging + "/archive")
        try context.stop.check(phase: "while downloading")
        guard case .downloaded(_, let etag, let lastModified, _) = result else {
            // 304: what the cache holds is current (checked before the request was made).
            guard let known = remembered, let store, case .valid(let archive) = store.verifiedArchive(known.digest)
            else { throw FetchProblem("the server answered 304 Not Modified, but the cached copy is gone") }
            try install(archive, into: directory)
            return ("sha256:\(known.digest)", "cached (304 not modified)", [])
        }
        let digest = try sha256Hex(ofFile: staging + "/archive")
        if let pin, pin != digest, pinnedByLock {
            throw FetchProblem(
                "the archive changed upstream since .buildpacks.lock pinned it:\n"
                    + "  locked  sha256 \(pin)\n  fetched sha256 \(digest)",
                hint:
                    "If the new archive is the one you want, run `\(CommandName.line(["lock"]))` and commit .buildpacks.lock; "
                    + "otherwise the download was tampered with or corrupted.")
        }
        if let pin, pin != digest {
            throw FetchProblem(
                "the archive's SHA-256 digest does not match the sha256= pin in .buildpacks:\n"
                    + "  expected \(pin)\n  actual   \(digest)",
                hint:
                    "If the new archive is the one you want, update the pin; otherwise the download was tampered with or corrupted."
            )
        }
        try install(staging + "/archive", into: directory)
        guard let store else { return ("sha256:\(digest)", "downloaded", []) }
        try store.keep(staging + "/archive", digest: digest)
        let fresh = Remembered(etag: etag, lastModified: lastModified, digest: digest)
        try? store.writeRecord(try fresh.text(url: url), to: store.recordPath(for: url))
        return ("sha256:\(digest)", "downloaded", [])
    }

    /// Extracts the archive into `directory` (a fresh path next to it first, so that a failure
    /// leaves nothing there).
    private func install(_ archive: String, into directory: String) throws {
        let extracted = directory + ".extract"
        Files.remove(extracted)
        defer { Files.remove(extracted) }
        try Files.makeDirectory(extracted)
        do {
            try extractArchive(atPath: archive, into: extracted, stop: context.stop)
        } catch let error as ArchiveError {
            throw FetchProblem("the archive cannot be used: \(error.message)")
        } catch let stopped as StopRequested {
            throw StopRequested(signal: stopped.signal, phase: "while extracting")
        }
        let buildpack = buildpackRoot(in: extracted)
        guard Files.isDirectory(buildpack + "/bin") else {
            throw FetchProblem("the archive holds no bin/ directory, so it is not a buildpack")
        }
        Files.makeExecutable(inDirectory: buildpack + "/bin")
        try Files.move(buildpack, to: directory)
    }

    private func hint(for error: HTTPError) -> String? {
        switch error.kind {
        case .status(let code) where code == 401 || code == 403:
            return "The server refused access: check the credentials or token in the URL."
        case .status(404):
            return "Check the URL in .buildpacks (for a registry name, check its namespace and name)."
        case .timeout:
            return "Raise MULTIPACK_FETCH_TIMEOUT (seconds) if the archive is large or the server slow."
        default:
            return nil
        }
    }
}
