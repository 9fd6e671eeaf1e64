import CMultipackSpawn
import FoundationEssentials
import Glibc

/// The three directories of the Buildpack API, made absolute.
public struct BuildDirectories: Sendable {
    public var build: String
    public var cache: String
    public var env: String

    public init(build: String, cache: String, env: String) {
        self.build = Files.absolute(build)
        self.cache = Files.absolute(cache)
        self.env = Files.absolute(env)
    }
}

/// What compile leaves for one BUILD_DIR, in the buildpack's own directory (never in BUILD_DIR,
/// SPEC §7.5): two builds that share a multipack directory each answer for their own.
struct BuildState {
    var buildDir: String
    var directory: String

    init(buildpackDir: String, buildDir: String) {
        self.buildDir = Files.absolute(buildDir)
        directory = buildpackDir + "/.multipack/builds/" + cacheKey(self.buildDir)
    }

    var recordPath: String { directory + "/record.json" }
    /// test-compile's children, kept for `bin/test` until the next compile of this BUILD_DIR.
    var childrenDir: String { directory + "/children" }

    /// A new compile starts from nothing: no earlier release or "succeeded" record survives it,
    /// nor what a killed write left. The directory itself stays: making it again would cost every
    /// build a directory's allocation, which on a busy ext4 takes a millisecond or more. With
    /// `trash`, each entry is renamed to a partial's name at once and removed there by `trash` (as
    /// `replaceWhole` does), or by the next write's sweep if this build is killed first.
    func clear(trash: SerialWork? = nil) throws {
        guard let names = try? ArchiveTree.contents(of: directory) else { return }
        for name in names {
            let path = directory + "/" + name
            if let trash {
                let aside = ScratchDirectory.name(prefix: name + ".partial-", in: directory)
                if multipack_rename(path, aside, UInt32(MULTIPACK_RENAME_NOREPLACE)) == 0 {
                    trash.add { Files.remove(aside) }
                    continue
                }
            }
            try Files.removeTree(path)
        }
    }

    /// The merged release, if compile saved one for this BUILD_DIR.
    var release: String? {
        guard let record = BuildRecord.load(self), record.outcome == "succeeded" else { return nil }
        return record.release
    }
}

/// What compile leaves for `release`, `test` and `report`.
public struct BuildRecord: Codable, Sendable {
    public struct Child: Codable, Sendable {
        public var position: Int
        public var url: String
        public var name: String
        public var version: String
        public var source: String
        public var directory: String
        public var fetchSeconds: Double
        public var detectSeconds: Double
        public var compileSeconds: Double
        public var releaseSeconds: Double
        /// BUILD_DIR's growth during the child's turn; nil with `MULTIPACK_SIZES=0`.
        public var growth: TreeSize? = nil
    }

    /// Whether `.buildpacks.lock` fixed the children's versions (SPEC §13).
    public struct LockState: Codable, Sendable, Equatable {
        /// `.buildpacks.lock` was there and was used.
        public var used: Bool
        /// Children fetched at a fixed version (a lock pin, `sha256=`, a full commit).
        public var pinned: Int
        public var children: Int
        /// Children that follow a moving ref: a branch, a tag, an unpinned archive.
        public var floating: Int
    }

    public var outcome = "running"
    /// The merged release YAML that `bin/release` prints, saved with the record in one write.
    public var release: String?
    public var failure: String?
    public var lock: LockState?
    public var stage = "compile"
    /// The BUILD_DIR this record is about, and the compile that writes it (to tell a killed one).
    public var buildDir = ""
    public var pid: Int32 = 0
    public var children: [Child] = []
    public var hookSeconds: [String: Double] = [:]
    /// BUILD_DIR's growth during each hook (SPEC §14).
    public var hookGrowth: [String: TreeSize] = [:]
    /// BUILD_DIR at the end of compile, after `.slugfilter`.
    public var buildDirSize: TreeSize?
    /// What `.slugfilter` removed; nil without one.
    public var slugFilterRemoved: TreeSize?
    /// Time spent measuring BUILD_DIR, and applying `.slugfilter`.
    public var sizesSeconds: Double?
    public var slugFilterSeconds: Double?
    public var totalSeconds = 0.0
    /// The environment the children's exports produced, for `test`.
    public var exported: [String: String] = [:]
    public var unset: [String] = []

    public init() {}

    /// The record compile left for `buildDir`, if any. A compile that was killed says so.
    static func load(_ state: BuildState) -> BuildRecord? {
        guard let data = FileManager.default.contents(atPath: state.recordPath),
            var record = try? JSONDecoder().decode(BuildRecord.self, from: data), record.buildDir == state.buildDir
        else { return nil }
        if record.outcome == "running", record.pid > 0, kill(record.pid, 0) != 0, errno == ESRCH {
            record.outcome = "killed"
        }
        return record
    }

    /// Writes the record (atomically) where `release` and `report` look for it.
    func write(_ state: BuildState, replacedGoesTo trash: SerialWork? = nil) throws {
        let data = try JSONEncoder().encode(self)
        try Files.makeDirectory(state.directory)
        try Files.write(String(decoding: data, as: UTF8.self), to: state.recordPath, replacedGoesTo: trash)
    }

    /// As `write`, for a build that is failing anyway.
    func save(_ state: BuildState, replacedGoesTo trash: SerialWork? = nil) {
        try? write(state, replacedGoesTo: trash)
    }

    /// Flat YAML for `bin/report`.
    public var reportYAML: String {
        var lines: [(String, String)] = [
            ("multipack_version", YAML.quoted(MultipackVersion.current.version)),
            ("multipack_commit", YAML.quoted(MultipackVersion.current.commit ?? "unknown")),
            ("outcome", YAML.quoted(outcome)),
            ("stage", YAML.quoted(stage)),
            ("children", "\(children.count)"),
            ("total_seconds", seconds(totalSeconds)),
        ]
        if let failure { lines.append(("failure", YAML.quoted(failure))) }
        if let lock {
            lines += [
                ("lock", YAML.quoted(lock.used ? "used" : "none")), ("lock_pinned_children", "\(lock.pinned)"),
                ("floating_children", "\(lock.floating)"),
            ]
        }
        for (name, value) in hookSeconds.sorted(by: { $0.key < $1.key }) {
            lines.append(("hook_\(name)_seconds", seconds(value)))
            if let growth = hookGrowth[name] {
                lines += [
                    ("hook_\(name)_growth_bytes", "\(growth.bytes)"), ("hook_\(name)_growth_files", "\(growth.files)"),
                ]
            }
        }
        if let removed = slugFilterRemoved {
            lines += [
                ("slugfilter_removed_bytes", "\(removed.bytes)"), ("slugfilter_removed_files", "\(removed.files)"),
            ]
        }
        if let size = buildDirSize {
            lines += [("build_dir_bytes", "\(size.bytes)"), ("build_dir_files", "\(size.files)")]
        }
        if let sizesSeconds { lines.append(("sizes_seconds", seconds(sizesSeconds))) }
        if let slugFilterSeconds { lines.append(("slugfilter_seconds", seconds(slugFilterSeconds))) }
        for child in children {
            let p = "child_\(child.position)_"
            lines += [
                (p + "url", YAML.quoted(child.url)), (p + "name", YAML.quoted(child.name)),
                (p + "version", YAML.quoted(child.version)), (p + "source", YAML.quoted(child.source)),
                (p + "fetch_seconds", seconds(child.fetchSeconds)),
                (p + "detect_seconds", seconds(child.detectSeconds)),
                (p + "compile_seconds", seconds(child.compileSeconds)),
                (p + "release_seconds", seconds(child.releaseSeconds)),
            ]
            if let growth = child.growth {
                lines += [(p + "growth_bytes", "\(growth.bytes)"), (p + "growth_files", "\(growth.files)")]
            }
        }
        return lines.map { "\($0.0): \($0.1)\n" }.joined()
    }

    private func seconds(_ value: Double) -> String {
        let thousandths = Int((value * 1000).rounded())
        return "\(thousandths / 1000).\(String(thousandths % 1000).leftPadded(to: 3))"
    }
}
