/// The app's Procfile: `type: command` per line. Its entries override the release's defaults.
enum Procfile {
    /// A Procfile; one a build left is read without following a symlink (multipack reads it as
    /// the caller, who may be root, and a build may point it at any file on the machine).
    static func read(_ path: String, followingLinks: Bool = false) -> [(key: String, value: String)] {
        guard let text = try? Files.read(path, followingLinks: followingLinks) else { return [] }
        var entries: [(key: String, value: String)] = []
        for line in text.lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].trimmingBlanks()
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else {
                continue
            }
            entries.upsert(String(key), String(line[line.index(after: colon)...].trimmingBlanks()))
        }
        return entries
    }

    /// The process types of a build: the release's defaults, then the Procfile's entries on top.
    static func processTypes(release: Release, procfile: [(key: String, value: String)]) -> [(
        key: String, value: String
    )] {
        var types = release.processTypes
        for (key, value) in procfile { types.upsert(key, value) }
        return types
    }
}
