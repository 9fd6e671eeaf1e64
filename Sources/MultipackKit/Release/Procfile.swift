import Glibc

/// The app's Procfile: `type: command` per line. Its entries override the release's defaults.
enum Procfile {
    /// A Procfile is a few lines; a build may leave a sparse file of any size there.
    static let maxBytes = 1 << 20

    /// A Procfile; one a build left is read without following a symlink (multipack reads it as
    /// the caller, who may be root, and a build may point it at any file on the machine). None,
    /// or one that is not a regular file, declares nothing; one past `maxBytes` is refused.
    static func read(_ path: String, followingLinks: Bool = false) throws(MultipackError) -> [(
        key: String, value: String
    )] {
        let bytes: [UInt8]
        do {
            bytes = try Files.readRegularFile(path, limit: maxBytes, followingLinks: followingLinks)
        } catch let error as FileError where error.errno == EFBIG {
            throw MultipackError.build(
                "\(path) is larger than \(TreeSize.format(Int64(maxBytes))): that is no Procfile (`type: command` lines).",
                hint: "Make the Procfile a few `type: command` lines.")
        } catch {
            return []
        }
        let text = String(decoding: bytes, as: UTF8.self)
        var entries: [(key: String, value: String)] = []
        var index: [String: Int] = [:]
        for line in text.lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].trimmingBlanks()
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else {
                continue
            }
            entries.upsert(String(key), String(line[line.index(after: colon)...].trimmingBlanks()), index: &index)
        }
        return entries
    }

    /// The process types of a build: the release's defaults, then the Procfile's entries on top.
    static func processTypes(release: Release, procfile: [(key: String, value: String)]) -> [(
        key: String, value: String
    )] {
        release.processTypes.upserting(procfile)
    }
}
