import Foundation
import Testing

@testable import MultipackKit

#if canImport(Glibc)
    import Glibc
#endif

/// rsync is the oracle: for each tree and rule set, `.slugfilter` must leave exactly the files,
/// directories and symlinks `rsync -a --delete-excluded --filter='merge RULES' SRC/ DST/` copies.
@Suite struct SlugFilterOracleTests {
    /// The rule sets the issue names, and the usual trims, over a tree like a Nix store's.
    static let handWritten: [String] = [
        "+ store/**/\n+ store/*keep*/**\n+ *[._]so*\n- store/**\n",
        "- node_modules/\n- /docs\n",
        "+ /lib/***\n- *\n",
        "- **/test/\n+ *.so\n- *.a\n",
        "- /store/*/share/\n- *.pyc\n- __pycache__/\n",
        "+ */\n+ *.so*\n- *\n",
        "- store/*/lib\n",
        "- **/keep*\n",
        "- ***\n",
        "- **/\n",
        "+ **/lib/**\n- /store/**\n",
        "- [a-c]*\n- ?[!a]*\n",
        "- [[:digit:]]*\n- *[]]*\n",
        "- lib\\*\n- a\\b\n",
        "# comment\n\n- store\n+ store\n",
        "- /.buildpacks\n- .slugfilter\n- *\n",
        "- x/***\n- store/**/***\n",
        "- lib/libz.so\n- a/*\n- b/c/\n",
        "- */docs\n+ lib/*.so*\n- lib/*\n",
        "# CRLF, as rsync reads it\r\n- share\r\n+ *.so*\r\n- store/*/lib/*\r\n",
    ]

    @Test func handWrittenRulesLeaveWhatRsyncCopies() throws {
        let temp = try TempDir("slugfilter")
        var random = SeededRandom(seed: 1)
        for (index, rules) in Self.handWritten.enumerated() {
            for variant in 0..<3 {
                let tree = TreeSpec.random(&random, nixLike: variant % 2 == 0)
                try compare(tree, rules, label: "hand-written \(index) on tree \(variant)", in: temp)
            }
        }
    }

    @Test func generatedRulesLeaveWhatRsyncCopies() throws {
        let temp = try TempDir("slugfilter")
        var random = SeededRandom(seed: 20_260_414)
        for index in 0..<220 {
            let tree = TreeSpec.random(&random, nixLike: index % 3 == 0)
            let rules = RuleSpec.random(&random)
            try compare(tree, rules, label: "generated case \(index)", in: temp)
        }
    }

    /// The index (literal rules looked up, wildcard ones behind cheap checks) must find the same
    /// first rule as trying every rule in order, on every path and for files and directories.
    @Test func theIndexFindsTheFirstMatchingRuleAsALinearScanWould() throws {
        var random = SeededRandom(seed: 7)
        for _ in 0..<400 {
            let tree = TreeSpec.random(&random, nixLike: Bool.random(using: &random))
            let rules = (0..<3).map { _ in RuleSpec.random(&random) }.joined()
            let filter = try SlugFilter(rules)
            for entry in tree.entries {
                let path = Array(entry.path.utf8)
                for isDirectory in [false, true] {
                    let compiled = filter.rules
                    let first = compiled.rules.indices.first { compiled.matches($0, path, isDirectory: isDirectory) }
                    let linear = first.map { compiled.rules[$0].include } ?? true
                    #expect(
                        filter.keeps(path, isDirectory: isDirectory) == linear,
                        "\(entry.path) (directory: \(isDirectory)) with\n\(rules)")
                }
            }
        }
    }

    @Test func aHostilePatternStaysLinear() throws {
        // Backtracking would take 2^30 steps here; the state-set matcher takes pattern × text.
        let pattern = String(repeating: "*a", count: 30) + "b"
        let filter = try SlugFilter("- \(pattern)\n- " + String(repeating: "**a", count: 30) + "b\n")
        let name = Array(String(repeating: "a", count: 4000).utf8)
        let start = ContinuousClock.now
        #expect(filter.keeps(name, isDirectory: false))
        #expect(filter.keeps(Array((String(repeating: "a/", count: 2000) + "c").utf8), isDirectory: false))
        #expect(start.duration(to: .now) < .seconds(20))
    }

    @Test(arguments: [
        ("- ok\nexclude foo\n", 2), ("\n\n+foo\n", 3), ("- a[bc\n", 1), ("- [[:nope:]]\n", 1), ("- x*\\\n", 1),
        ("  - indented\n", 1), ("-\n", 1), ("! \n", 1),
    ])
    func aBadLineIsNamed(_ text: String, _ line: Int) {
        #expect {
            try SlugFilter(text)
        } throws: { error in
            (error as? MultipackError)?.headline.contains(".slugfilter line \(line) ") == true
        }
    }

    @Test func aByteOrderMarkAndCRLFAreRead() throws {
        let filter = try SlugFilter("\u{FEFF}- a\r\n\r\n- b/\r\n")
        #expect(!filter.keeps(Array("x/a".utf8), isDirectory: false))
        #expect(!filter.keeps(Array("b".utf8), isDirectory: true) && filter.keeps(Array("b".utf8), isDirectory: false))
    }

    @Test func trailingBlanksAreKeptAndFlagged() throws {
        let filter = try SlugFilter("- a \n- b\n")
        #expect(filter.trailingBlankLines == [1])
        #expect(filter.keeps(Array("a".utf8), isDirectory: false))
        #expect(!filter.keeps(Array("a ".utf8), isDirectory: false))
    }

    /// Builds the tree twice, filters one copy with rsync and the other with `.slugfilter` rules.
    private func compare(_ tree: TreeSpec, _ rules: String, label: String, in temp: TempDir) throws {
        let work = temp.path + "/case"
        defer { try? FileManager.default.removeItem(atPath: work) }
        let source = work + "/src"
        let ours = work + "/ours"
        try tree.create(in: source)
        try tree.create(in: ours)
        let rulesFile = work + "/rules"
        // What .slugfilter always keeps, as rsync rules ahead of the file's own.
        let kept = SlugFilter.kept.map { "+ /\($0)\n" }.joined()
        try (kept + rules).write(toFile: rulesFile, atomically: true, encoding: .utf8)
        let rsync = try Shell.run(
            "rsync", ["-a", "--delete-excluded", "--filter=merge \(rulesFile)", source + "/", work + "/rsync/"])
        try #require(rsync.status == 0, "\(label): rsync failed: \(rsync.all)")
        _ = try SlugFilter(rules).apply(to: ours)
        let expected = try Listing.of(work + "/rsync")
        let actual = try Listing.of(ours)
        if expected != actual {
            let missing = expected.subtracting(actual).sorted().prefix(8)
            let extra = actual.subtracting(expected).sorted().prefix(8)
            let treeText = tree.entries.map(\.description).joined(separator: "\n")
            let message =
                "\(label)\nrules:\n\(rules)tree:\n\(treeText)\n"
                + "missing (rsync kept): \(Array(missing))\nextra (rsync dropped): \(Array(extra))"
            Issue.record(Comment(rawValue: message))
        }
    }
}

/// SplitMix64: the same cases on every machine.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

struct TreeSpec {
    enum Kind { case file, directory, symlink(String) }
    struct Entry: CustomStringConvertible {
        var path: String
        var kind: Kind
        var description: String {
            switch kind {
            case .file: return "f \(path)"
            case .directory: return "d \(path)/"
            case .symlink(let target): return "l \(path) -> \(target)"
            }
        }
    }

    var entries: [Entry] = []

    static let names = [
        "a", "b", "c", "lib", "share", "docs", "test", "keep", "x", "store", "node_modules", "__pycache__",
        "libz.so", "libz.so.1", "libfoo_so.2", "z.a", "m.pyc", ".hidden", "keeper", "abc", "b1", "9x", "]x",
        "lib*", "a\\b", "sub dir", "[a]",
    ]
    static let storeNames = [
        "0a1b-gcc-13", "9zz-keep-me", "k3-python", "keep", "x-keepsake", "p-lib", "s.so.3",
    ]

    static func random(_ random: inout SeededRandom, nixLike: Bool) -> TreeSpec {
        var tree = TreeSpec()
        var used: Set<String> = ["store", ".buildpacks", ".slugfilter"]
        func fill(_ prefix: String, depth: Int) {
            let count = Int.random(in: depth == 0 ? 3...7 : 0...4, using: &random)
            for _ in 0..<count {
                let pool = prefix.hasSuffix("store") || (nixLike && depth == 1) ? storeNames : names
                let name = pool.randomElement(using: &random)!
                let path = prefix.isEmpty ? name : prefix + "/" + name
                guard used.insert(path).inserted else { continue }
                let roll = Int.random(in: 0..<10, using: &random)
                if roll < 4 && depth < 4 {
                    tree.entries.append(Entry(path: path, kind: .directory))
                    fill(path, depth: depth + 1)
                } else if roll == 4 {
                    let target = ["a", "../lib", "/nonexistent", "libz.so.1", "store"].randomElement(using: &random)!
                    tree.entries.append(Entry(path: path, kind: .symlink(target)))
                } else {
                    tree.entries.append(Entry(path: path, kind: .file))
                }
            }
        }
        if nixLike {
            tree.entries.append(Entry(path: "store", kind: .directory))
            fill("store", depth: 1)
        }
        fill("", depth: 0)
        tree.entries.append(Entry(path: ".buildpacks", kind: .file))
        if Int.random(in: 0..<2, using: &random) == 0 { tree.entries.append(Entry(path: ".slugfilter", kind: .file)) }
        return tree
    }

    func create(in root: String) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
        for entry in entries {
            let path = root + "/" + entry.path
            switch entry.kind {
            case .directory:
                try fm.createDirectory(atPath: path, withIntermediateDirectories: true)
            case .file:
                try Data(entry.path.utf8).write(to: URL(fileURLWithPath: path))
            case .symlink(let target):
                try fm.createSymbolicLink(atPath: path, withDestinationPath: target)
            }
        }
    }
}

enum RuleSpec {
    static let pieces = [
        "store", "lib", "keep", "a", "b", "x", "*", "*", "**", "**", "***", "?", "*keep*", "*.so*", "*[._]so*",
        "[a-c]*", "[!a]*", "lib?", "*.pyc", "__pycache__", "node_modules", "9*", "?[[:digit:]]", "*\\**", "s*",
        "[]]x", "share", "docs", "test",
    ]

    static func random(_ random: inout SeededRandom) -> String {
        var lines: [String] = []
        for _ in 0..<Int.random(in: 1...6, using: &random) {
            var parts: [String] = []
            for _ in 0..<Int.random(in: 1...3, using: &random) { parts.append(pieces.randomElement(using: &random)!) }
            var pattern = parts.joined(separator: "/")
            if Int.random(in: 0..<4, using: &random) == 0 { pattern = "/" + pattern }
            if Int.random(in: 0..<4, using: &random) == 0 { pattern += "/" }
            lines.append((Bool.random(using: &random) ? "+ " : "- ") + pattern)
        }
        if Int.random(in: 0..<5, using: &random) == 0 { lines.insert("# a comment", at: 0) }
        return lines.joined(separator: "\n") + "\n"
    }
}

enum Listing {
    /// Every entry under `root`: `d path`, `f path`, `l path -> target`.
    static func of(_ root: String) throws -> Set<String> {
        var result: Set<String> = []
        func walk(_ relative: String) throws {
            let directory = relative.isEmpty ? root : root + "/" + relative
            for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
                let path = relative.isEmpty ? name : relative + "/" + name
                var info = stat()
                guard lstat(root + "/" + path, &info) == 0 else { continue }
                switch info.st_mode & S_IFMT {
                case S_IFDIR:
                    result.insert("d \(path)")
                    try walk(path)
                case S_IFLNK:
                    let target = try FileManager.default.destinationOfSymbolicLink(atPath: root + "/" + path)
                    result.insert("l \(path) -> \(target)")
                default:
                    result.insert("f \(path)")
                }
            }
        }
        try walk("")
        return result
    }
}

/// The walks by descriptor: symlinks are never followed, read-only trees still go, counts are right.
@Suite struct TreeWalkTests {
    @Test func symlinksAreNotFollowedAndReadOnlyTreesAreRemoved() throws {
        let temp = try TempDir("treewalk")
        let build = temp.sub("build")
        let outside = temp.sub("outside")
        try temp.write("outside/big", String(repeating: "x", count: 5000))
        try temp.write("build/keep/a.txt", "12345")
        try temp.write("build/cache/mod/x.go", String(repeating: "y", count: 300))
        try temp.write("build/cache/mod/sub/z.go", "zz")
        let fm = FileManager.default
        try fm.createSymbolicLink(atPath: build + "/keep/out", withDestinationPath: outside)
        try fm.createSymbolicLink(atPath: build + "/cache/out", withDestinationPath: outside)
        // As Go leaves its module cache: read-only all the way down.
        for dir in ["cache/mod/sub", "cache/mod", "cache"] {
            try fm.setAttributes([.posixPermissions: 0o555], ofItemAtPath: build + "/" + dir)
        }
        defer { chmod(build + "/cache", 0o755) }

        let before = TreeWalk.measure(build)
        // a.txt, the two links (each as long as its target's path), x.go, z.go.
        let link = Int64(outside.utf8.count)
        #expect(before == TreeSize(bytes: 5 + 300 + 2 + 2 * link, files: 5))

        let outcome = try SlugFilter("- cache/\n- out\n").apply(to: build)
        #expect(outcome.total == TreeSize(bytes: 302 + 2 * link, files: 4))
        #expect(outcome.removed.map(\.path).sorted() == ["cache/", "keep/out"])
        #expect(!fm.fileExists(atPath: build + "/cache"))
        #expect(fm.fileExists(atPath: outside + "/big"))
        #expect(TreeWalk.measure(build) == TreeSize(bytes: 5, files: 1))
    }
}
