import Glibc

/// A child published as a tarball (an archive URL or a registry name): downloaded through libcurl,
/// verified against its `sha256=` pin, extracted in-process, and cached (SPEC §4–§6).
///
/// Cache layout, under CACHE_DIR/.multipack/:
///   archives/<sha256>/   the extracted buildpack, named by the archive's digest
///   urls/<key of URL>    what the URL served last: url, ETag, Last-Modified, digest
struct ArchiveFetch {
    var url: String
    var pin: String?
    /// The pin is `.buildpacks.lock`'s: a mismatch means upstream changed since `multipack lock`.
    var pinnedByLock = false
    var context: FetchContext

    var masked: String { Masking.url(url) }

    struct Remembered {
        var url: String
        var etag: String?
        var lastModified: String?
        var digest: String

        init(url: String, etag: String?, lastModified: String?, digest: String) {
            self.url = url
            self.etag = etag
            self.lastModified = lastModified
            self.digest = digest
        }

        init?(_ text: String) {
            let fields = text.lines.map(String.init)
            guard fields.count >= 4, fields[3].count == 64 else { return nil }
            url = fields[0]
            etag = fields[1].isEmpty ? nil : fields[1]
            lastModified = fields[2].isEmpty ? nil : fields[2]
            digest = fields[3]
        }

        var text: String { [url, etag ?? "", lastModified ?? "", digest].joined(separator: "\n") + "\n" }
    }

    func fetch(into directory: String) throws -> (version: String, source: String, warnings: [String]) {
        guard let root = context.cacheRoot else { return try download(into: directory, remembered: nil).0 }
        let record = "\(root)/urls/\(cacheKey(url))"

        // A pinned digest that is cached needs no request at all.
        if let pin, Files.isDirectory("\(root)/archives/\(pin)") {
            try Files.copyTree("\(root)/archives/\(pin)", to: directory)
            return ("sha256:\(pin)", "cached", [])
        }
        let remembered = (try? Files.read(record)).flatMap(Remembered.init).flatMap { $0.url == url ? $0 : nil }
        let usable = remembered.flatMap { Files.isDirectory("\(root)/archives/\($0.digest)") ? $0 : nil }
        do {
            let (result, fresh) = try download(into: directory, remembered: pin == nil ? usable : nil)
            if let fresh {
                try CacheLock.withLock(in: root) {
                    try Files.makeDirectory("\(root)/urls"); try Files.write(fresh.text, to: record)
                }
            }
            return result
        } catch let problem as HTTPError where problem.isTransient {
            // A flaky network must not fail a build that needs nothing new.
            guard pin == nil, let usable else { throw FetchProblem(problem.description) }
            try Files.copyTree("\(root)/archives/\(usable.digest)", to: directory)
            return (
                "sha256:\(usable.digest)", "cached (network failed)",
                [
                    "Could not reach \(masked) (\(problem.description)); using the cached copy \(usable.digest.prefix(12))."
                ]
            )
        } catch let problem as HTTPError {
            if problem.kind == .stopped && SignalForwarding.stopSignal != nil { throw Interrupted() }
            throw FetchProblem(problem.description, hint: hint(for: problem))
        }
    }

    /// Downloads (or revalidates) and installs the archive; returns what to remember of the URL.
    private func download(into directory: String, remembered: Remembered?) throws
        -> ((version: String, source: String, warnings: [String]), Remembered?)
    {
        let staging = try Files.temporaryDirectory(prefix: "multipack-archive-")
        defer { Files.remove(staging) }
        let request = context.archiveRequest(
            url, ifNoneMatch: remembered?.etag, ifModifiedSince: remembered?.lastModified)
        context.trace(Command("curl", [masked], environment: [:]))
        let result = try context.download(request, to: staging + "/archive")
        if SignalForwarding.stopSignal != nil { throw Interrupted() }
        guard case .downloaded(_, let etag, let lastModified, _) = result else {
            // 304: what the cache holds is current.
            let known = remembered!
            try Files.copyTree("\(context.cacheRoot!)/archives/\(known.digest)", to: directory)
            return (("sha256:\(known.digest)", "cached (304 not modified)", []), nil)
        }
        let digest = try sha256Hex(ofFile: staging + "/archive")
        if let pin, pin != digest, pinnedByLock {
            throw FetchProblem(
                "the archive changed upstream since .buildpacks.lock pinned it:\n"
                    + "  locked  sha256 \(pin)\n  fetched sha256 \(digest)",
                hint:
                    "If the new archive is the one you want, run `multipack lock` and commit .buildpacks.lock; "
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
        let extracted = staging + "/tree"
        try Files.makeDirectory(extracted)
        do {
            try extractArchive(atPath: staging + "/archive", into: extracted)
        } catch let error as ArchiveError {
            throw FetchProblem("the archive cannot be used: \(error.message)")
        }
        let buildpack = buildpackRoot(in: extracted)
        guard Files.isDirectory(buildpack + "/bin") else {
            throw FetchProblem("the archive holds no bin/ directory, so it is not a buildpack")
        }
        Files.makeExecutable(inDirectory: buildpack + "/bin")
        let fresh = Remembered(url: url, etag: etag, lastModified: lastModified, digest: digest)
        guard let root = context.cacheRoot else {
            try Files.move(buildpack, to: directory)
            return (("sha256:\(digest)", "downloaded", []), nil)
        }
        try CacheLock.withLock(in: root) {
            try Files.makeDirectory("\(root)/archives")
            if !Files.isDirectory("\(root)/archives/\(digest)") {
                try Files.move(buildpack, to: "\(root)/archives/\(digest)")
            }
        }
        try Files.copyTree("\(root)/archives/\(digest)", to: directory)
        return (("sha256:\(digest)", "downloaded", []), fresh)
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
