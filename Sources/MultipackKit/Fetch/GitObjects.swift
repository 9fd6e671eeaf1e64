import Glibc

/// The git objects that describe one commit's tree: the commit, every tree below it, and the same
/// for each submodule's commit. A cached checkout is checked against them before every use
/// (SPEC §5): CACHE_DIR is the children's to write, so the only anchor is the commit's own name.
///
/// Kept beside the checkout as `<commit>.objects`, the objects one after another as git hashes
/// them (`<type> <size>\0<content>`). Nothing read back is trusted: each object is named by its
/// own SHA-1 as it is loaded, so a forged or damaged file can only lack what a check looks for.
/// Blobs are not kept: the checkout's files are hashed as blobs and compared with the trees.
struct GitObjects {
    struct Object {
        var type: String
        var content: [UInt8]
    }

    private(set) var objects: [[UInt8]: Object] = [:]
    private(set) var serialized: [UInt8] = []

    /// More than any buildpack's trees take (a 25,000-file tree's are about 1 MB).
    static let maxBytes = 64 << 20

    init() {}

    /// Reads a file written by `serialized`; nil when it is not one (missing, too big, cut short).
    init?(parsing bytes: [UInt8]) throws {
        var index = 0
        while index < bytes.count {
            guard let space = bytes[index...].firstIndex(of: 0x20),
                let nul = bytes[space...].firstIndex(of: 0), space - index <= 6,
                let size = Int(String(decoding: bytes[(space + 1)..<nul], as: UTF8.self)), size >= 0,
                size <= bytes.count - nul - 1
            else { return nil }
            let type = String(decoding: bytes[index..<space], as: UTF8.self)
            guard type == "commit" || type == "tree" else { return nil }
            try add(type, Array(bytes[(nul + 1)..<(nul + 1 + size)]))
            index = nul + 1 + size
        }
    }

    /// Adds an object and returns its name.
    @discardableResult
    mutating func add(_ type: String, _ content: [UInt8]) throws -> [UInt8] {
        let name = try SHA1Hasher.objectName(type, content)
        if objects[name] == nil {
            objects[name] = Object(type: type, content: content)
            serialized += Array("\(type) \(content.count)\0".utf8) + content
        }
        return name
    }

    /// The root tree of a commit kept here.
    func tree(ofCommit commit: [UInt8]) -> [UInt8]? {
        guard let object = objects[commit], object.type == "commit" else { return nil }
        // The first line is `tree <40 hex>`.
        let content = object.content
        guard content.count >= 46, content.starts(with: Array("tree ".utf8)), content[45] == 0x0A else { return nil }
        return GitName.bytes(String(decoding: content[5..<45], as: UTF8.self))
    }

    /// One entry of a tree object: `<mode> <name>\0<20 bytes>`.
    struct Entry {
        var mode: Mode
        var name: [UInt8]
        var object: [UInt8]
    }

    enum Mode: Equatable {
        case directory, file, executable, symlink, submodule
    }

    /// The entries of a tree kept here; nil when it is not, or is not a tree git would write.
    func entries(ofTree tree: [UInt8]) -> [Entry]? {
        guard let object = objects[tree], object.type == "tree" else { return nil }
        let content = object.content
        var entries: [Entry] = []
        var index = 0
        while index < content.count {
            guard let space = content[index...].firstIndex(of: 0x20),
                let nul = content[space...].firstIndex(of: 0), nul + 21 <= content.count
            else { return nil }
            let mode: Mode
            switch String(decoding: content[index..<space], as: UTF8.self) {
            case "40000": mode = .directory
            case "100644": mode = .file
            case "100755": mode = .executable
            case "120000": mode = .symlink
            case "160000": mode = .submodule
            default: return nil
            }
            let name = Array(content[(space + 1)..<nul])
            guard !name.isEmpty, name != [0x2E], name != [0x2E, 0x2E], !name.contains(0x2F) else { return nil }
            entries.append(Entry(mode: mode, name: name, object: Array(content[(nul + 1)..<(nul + 21)])))
            index = nul + 21
        }
        return entries
    }
}

/// Object names as git prints them (40 hex digits) and as trees hold them (20 bytes).
enum GitName {
    static func bytes(_ hex: String) -> [UInt8]? {
        let digits = Array(hex.utf8)
        guard digits.count == 40 else { return nil }
        func value(_ digit: UInt8) -> UInt8? {
            switch digit {
            case 48...57: digit - 48
            case 97...102: digit - 87
            case 65...70: digit - 55
            default: nil
            }
        }
        var bytes: [UInt8] = []
        for index in stride(from: 0, to: 40, by: 2) {
            guard let high = value(digits[index]), let low = value(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
        }
        return bytes
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0f)]] }, as: UTF8.self)
    }
}

extension GitObjects {
    /// The objects of a fresh clone's commit, asked of git (`cat-file commit`, `ls-tree -r -t`),
    /// then every submodule checked out in it, recursively. Each tree is rebuilt from its
    /// listing and must come out with the name git gave it: what cannot be rebuilt exactly (a
    /// tree with a mode git no longer writes) is said, and the clone is then not kept.
    static func record(
        checkout: String, commit: String, git: (_ directory: String, _ arguments: [String]) throws -> [UInt8]
    ) throws -> GitObjects {
        var objects = GitObjects()
        try objects.record(checkout, commit: commit, path: "", git: git)
        return objects
    }

    private mutating func record(
        _ directory: String, commit: String, path: String, git: (String, [String]) throws -> [UInt8]
    ) throws {
        let where_ = path.isEmpty ? "" : " (submodule \(path))"
        guard let commitName = GitName.bytes(commit) else { throw Unverifiable("\(commit) is not a commit\(where_)") }
        guard try add("commit", try git(directory, ["cat-file", "commit", commit])) == commitName else {
            throw Unverifiable("git gave another object for commit \(commit.prefix(12))\(where_)")
        }
        guard let root = tree(ofCommit: commitName) else {
            throw Unverifiable("commit \(commit.prefix(12)) names no tree\(where_)")
        }
        let listing = try git(directory, ["ls-tree", "-r", "-t", "-z", "--full-tree", commit])
        // Every directory's entries (`<mode> SP <type> SP <name> TAB <path> NUL`), by its path.
        var children: [[UInt8]: [(mode: [UInt8], name: [UInt8], object: [UInt8])]] = [[]: []]
        var listed: [[UInt8]: [UInt8]] = [[]: root]
        var submodules: [(path: [UInt8], commit: String)] = []
        for line in listing.split(separator: 0) {
            let fields = line.split(separator: 0x20, maxSplits: 2)
            guard fields.count == 3, let tab = fields[2].firstIndex(of: 0x09),
                let object = GitName.bytes(String(decoding: fields[2][..<tab], as: UTF8.self))
            else { throw Unverifiable("git ls-tree printed a line multipack cannot read\(where_)") }
            var mode = Array(fields[0])
            if mode == Array("040000".utf8) { mode = Array("40000".utf8) }
            let entryPath = Array(fields[2][(tab + 1)...])
            let slash = entryPath.lastIndex(of: 0x2F)
            let parent = slash.map { Array(entryPath[..<$0]) } ?? []
            let name = slash.map { Array(entryPath[($0 + 1)...]) } ?? entryPath
            children[parent, default: []].append((mode, name, object))
            if mode == Array("40000".utf8) {
                listed[entryPath] = object
                children[entryPath, default: []] = children[entryPath] ?? []
            }
            if mode == Array("160000".utf8) { submodules.append((entryPath, GitName.hex(object))) }
        }
        for (treePath, entries) in children {
            // ls-tree lists each tree's entries in the tree's own order: kept as they come (an
            // order that were not git's would rebuild a tree of another name, and be said so).
            var content: [UInt8] = []
            for entry in entries { content += entry.mode + [0x20] + entry.name + [0] + entry.object }
            let shown = treePath.isEmpty ? "the root directory" : String(decoding: treePath, as: UTF8.self)
            guard try add("tree", content) == listed[treePath] else {
                throw Unverifiable("the tree of \(shown)\(where_) cannot be rebuilt from git's listing")
            }
        }
        for submodule in submodules {
            let subPath = String(decoding: submodule.path, as: UTF8.self)
            let subDirectory = directory + "/" + subPath
            // A submodule that was not checked out is an empty directory, checked as one.
            guard Files.lexists(subDirectory + "/.git") else { continue }
            try record(
                subDirectory, commit: submodule.commit, path: path.isEmpty ? subPath : path + "/" + subPath, git: git)
        }
    }

    /// The objects cannot describe the checkout (said as the reason the clone is not kept).
    struct Unverifiable: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}
