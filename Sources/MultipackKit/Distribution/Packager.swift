import FoundationEssentials
import Glibc

/// `multipack package`: the buildpack archive a Heroku app can use without a Swift toolchain
/// (SPEC §12). A release build with the Swift standard library linked statically, stripped, under
/// `vendor/multipack-<arch>`, next to the checkout's tracked files minus `[publish.Ignore]`.
/// Reproducible: fixed mtimes, owners, modes and member order, and a stamp that depends on the
/// commit only.
public struct Packager {
    /// The checkout: where `Package.swift` and `buildpack.toml` are.
    public var sourceDir: String
    /// The archive to write.
    public var output: String
    /// Also write the stripped binary here (the release asset the shims download).
    public var binaryOutput: String?
    /// SwiftPM's build directory for the release build, kept apart from the checkout's `.build`
    /// so that packaging never rebuilds (or is rebuilt by) the developer's own builds.
    public var scratchPath: String
    /// The version to stamp, instead of `buildpack.toml`'s: a release is built from the commit
    /// before the one that names it (SPEC §16).
    public var version: String?
    public var invocation: Invocation

    public init(sourceDir: String, output: String, invocation: Invocation) {
        self.sourceDir = Files.absolute(sourceDir)
        self.output = Files.absolute(output)
        self.scratchPath = self.sourceDir + "/.build-package"
        self.invocation = invocation
    }

    public struct Result: Sendable {
        public var archive: String
        public var architecture: String
        public var version: MultipackVersion
        public var binarySize: Int64
        public var binarySHA256: String
        public var archiveSHA256: String
    }

    var log: Log { invocation.log }

    /// Names that never ship whatever `[publish.Ignore]` says: the binary is added fresh, and
    /// `.multipack/` is where a build leaves its records (a stale one would be released).
    static let alwaysLeftOut = ["vendor/", ".multipack/", ".git/"]

    public func run() throws -> Result {
        guard Files.exists(sourceDir + "/Package.swift"), Files.exists(sourceDir + "/buildpack.toml") else {
            throw MultipackError.usage(
                "\(sourceDir) is not a multipack checkout (it needs Package.swift and buildpack.toml).",
                hint: "Run multipack package in the checkout, or pass --source DIR.")
        }
        let toml = BuildpackToml(try Files.read(sourceDir + "/buildpack.toml"))
        if let version, !Self.isVersion(version) {
            throw MultipackError.usage(
                "--release \(Masking.text(String(version.prefix(40)))) is not a version.",
                hint: "Give MAJOR.MINOR.PATCH, e.g. 1.2.0.")
        }
        guard let versionText = version ?? toml.string("buildpack", "version"), !versionText.isEmpty else {
            throw MultipackError.usage(
                "buildpack.toml has no version under [buildpack].", hint: "Add version = \"x.y.z\" there.")
        }
        let version = MultipackVersion(version: versionText, commit: try commit())
        let architecture = Self.machine()
        log.step("Packaging multipack \(version) for \(architecture)")
        if version.commit?.hasSuffix("-dirty") == true {
            log.warning("The checkout has uncommitted changes: the archive holds them, and its commit says -dirty.")
        }

        // `--output dist/multipack.tgz` on a fresh clone: dist/ is made, as `tar -cf` users expect.
        for path in [output] + (binaryOutput.map { [Files.absolute($0)] } ?? []) {
            if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
                try Files.makeDirectory(String(path[..<slash]))
            }
        }
        let binary = try buildBinary(version: version)
        ScratchDirectory.sweepTemporaryRoot()
        let stagingDirectory = try ScratchDirectory(.package)
        defer { stagingDirectory.remove() }
        let staging = stagingDirectory.path
        let ignore = PublishIgnore(patterns: toml.strings("publish.Ignore", "files") + Self.alwaysLeftOut)
        let files = try trackedFiles().filter { !ignore.matches($0) }
        for file in files { try stage(file, into: staging) }

        let vendored = staging + "/vendor/multipack-" + architecture
        try Files.makeDirectory(staging + "/vendor")
        try tool(["strip", "llvm-strip"], ["-o", vendored, binary], what: "strip the binary")
        chmod(vendored, 0o755)
        let binarySHA256 = try sha256Hex(ofFile: vendored)
        // The archive's buildpack.toml names the version and the binary it carries.
        var stagedToml = try Files.read(staging + "/buildpack.toml")
        stagedToml = BuildpackToml.setting("buildpack", "version", to: version.version, in: stagedToml)
        stagedToml = BuildpackToml.setting(
            "metadata.multipack", "sha256_" + architecture, to: binarySHA256, in: stagedToml)
        try Files.write(stagedToml, to: staging + "/buildpack.toml")
        normaliseDirectoryModes(staging)
        if let binaryOutput {
            try Files.copyFile(vendored, to: Files.absolute(binaryOutput), mode: 0o755)
        }

        try Files.replaceWhole(output) { temporary in
            var options = TarGzWriter.Options.reproducible
            options.compressionLevel = 9
            var writer = try TarGzWriter(path: temporary, options: options)
            try writer.addTree(staging, prefix: "")
            try writer.finish()
        }
        let result = Result(
            archive: output, architecture: architecture, version: version, binarySize: Files.size(vendored),
            binarySHA256: binarySHA256, archiveSHA256: try sha256Hex(ofFile: output))
        log.step("Wrote \(output) (\(files.count + 1) files, \(Self.megabytes(Files.size(output))))")
        log.detail(
            "vendor/multipack-\(architecture): \(Self.megabytes(result.binarySize)), sha256 \(result.binarySHA256)")
        log.detail("For buildpack.toml's [metadata.multipack], once the binary is uploaded as the release asset:")
        return result
    }

    /// MAJOR.MINOR.PATCH with an optional `-pre` or `+build` part, as release.sh takes it.
    static func isVersion(_ text: String) -> Bool {
        let core = text.prefix { $0 != "-" && $0 != "+" }
        let parts = core.split(separator: ".", omittingEmptySubsequences: false)
        let rest = text.dropFirst(core.count)
        return parts.count == 3
            && parts.allSatisfy { !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }
            && (rest.isEmpty
                || (rest.count > 1
                    && rest.dropFirst().allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || ".-".contains($0)) }))
    }

    /// `version=…` and `commit=…`, compiled into an object file that defines `multipack_stamp`
    /// strongly (CMultipackStamp has the weak default) and handed to the linker.
    static func stampSource(_ version: MultipackVersion) -> String {
        let text = "version=\(version.version)\ncommit=\(version.commit ?? "")\n"
        let escaped = text.unicodeScalars.map { scalar -> String in
            switch scalar {
            case "\n": return "\\n"
            case "\"", "\\": return "\\" + String(scalar)
            default: return scalar.isASCII && scalar.value >= 0x20 ? String(scalar) : ""
            }
        }.joined()
        return "const char multipack_stamp[] = \"\(escaped)\";\n"
    }

    private func buildBinary(version: MultipackVersion) throws -> String {
        let scratchPath = Files.absolute(scratchPath)
        let stampDir = scratchPath + "/multipack-stamp"
        let arguments = [
            "build", "-c", "release", "--product", "multipack", "--static-swift-stdlib", "-Xswiftc", "-Osize",
            "--package-path", sourceDir, "--scratch-path", scratchPath, "-Xlinker", stampDir + "/stamp.o",
        ]
        let binary =
            try tool(["swift"], arguments + ["--show-bin-path"], what: "find the release binary")
            .trimmingCharacters(" ", "\n") + "/multipack"
        try Files.makeDirectory(stampDir)
        let source = Self.stampSource(version)
        if (try? Files.read(stampDir + "/stamp.c")) != source || !Files.exists(stampDir + "/stamp.o") {
            try Files.write(source, to: stampDir + "/stamp.c")
            try tool(
                ["clang", "cc"], ["-c", "-O2", "-fPIC", "-o", stampDir + "/stamp.o", stampDir + "/stamp.c"],
                what: "compile the version stamp")
            // SwiftPM does not see a linker input change: without its output it has to link again.
            Files.remove(binary)
        }
        log.step("Building the release binary (static Swift standard library)")
        try tool(["swift"], arguments, what: "build the release binary", quiet: false)
        return binary
    }

    /// The full commit, `-dirty` when tracked files differ from it.
    private func commit() throws -> String? {
        guard
            let head = try? tool(["git"], ["-C", sourceDir, "rev-parse", "HEAD"], what: "read the commit")
                .trimmingCharacters(" ", "\n")
        else { return nil }
        let status = try tool(
            ["git"], ["-C", sourceDir, "status", "--porcelain", "--untracked-files=no"], what: "check for changes")
        return status.isEmpty ? head : head + "-dirty"
    }

    /// The checkout's tracked files (untracked clutter never ships), as paths relative to it.
    private func trackedFiles() throws -> [String] {
        let listing = try tool(
            ["git"], ["-C", sourceDir, "ls-files", "-z", "--cached"], what: "list the checkout's files")
        return listing.split(separator: "\0").map(String.init).sorted()
    }

    private func stage(_ file: String, into staging: String) throws {
        let source = sourceDir + "/" + file
        var info = stat()
        // Tracked but deleted, or a submodule: nothing to ship.
        guard lstat(source, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return }
        let target = staging + "/" + file
        if let slash = target.lastIndex(of: "/") { try Files.makeDirectory(String(target[..<slash])) }
        // Modes as git knows them (executable or not), whatever the checkout's umask.
        try Files.copyFile(source, to: target, mode: (info.st_mode & 0o111) != 0 ? 0o755 : 0o644)
    }

    private func normaliseDirectoryModes(_ directory: String) {
        chmod(directory, 0o755)
        for name in Files.list(directory) where Files.isDirectory(directory + "/" + name) {
            normaliseDirectoryModes(directory + "/" + name)
        }
    }

    /// Runs the first of `names` found on PATH; fails naming the step and showing its output.
    @discardableResult
    private func tool(_ names: [String], _ arguments: [String], what: String, quiet: Bool = true) throws -> String {
        guard let executable = names.lazy.compactMap({ Self.which($0, self.invocation.environment) }).first else {
            throw MultipackError.build(
                "Could not \(what): \(names.joined(separator: " or ")) is not on PATH.",
                hint: "multipack package needs a Swift toolchain, git and binutils (apt-get install binutils git).")
        }
        // Each command is shown once, before it runs; a loud one then streams its own output.
        log.detail("+ " + Command(executable, arguments, environment: [:]).traceLine)
        let result = try Spawner.run(
            Command(
                executable, arguments, environment: invocation.environment, stdout: quiet ? .capture : .inherit,
                stderr: quiet ? .capture : .inherit))
        guard result.termination.succeeded else {
            let output = (result.stdoutText + result.stderrText).lines.suffix(30).map { "    " + $0 }
            throw MultipackError.build(
                "Could not \(what): \(executable) ended with \(result.termination).", details: output)
        }
        return result.stdoutText
    }

    static func which(_ name: String, _ environment: [String: String]) -> String? {
        for dir in (environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        where Files.isExecutable("\(dir)/\(name)") {
            return "\(dir)/\(name)"
        }
        return nil
    }

    /// `uname -m`: the name bash has in `$HOSTTYPE`, which the shims use.
    static func machine() -> String {
        var names = utsname()
        uname(&names)
        return withUnsafeBytes(of: &names.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    static func megabytes(_ bytes: Int64) -> String {
        let tenths = Int((Double(bytes) / 100_000).rounded())
        return "\(tenths / 10).\(tenths % 10) MB"
    }
}

/// `[publish.Ignore] files`, read like `.gitignore`: a trailing `/` matches a directory (and all
/// below it), a pattern with a `/` elsewhere is anchored at the root, any other matches a name at
/// any depth; `*`, `?` and `[…]` as in the shell.
struct PublishIgnore {
    var patterns: [String]

    func matches(_ path: String) -> Bool {
        let parts = path.split(separator: "/").map(String.init)
        return patterns.contains { raw in
            var pattern = raw
            let directoryOnly = pattern.hasSuffix("/")
            while pattern.hasSuffix("/") { pattern.removeLast() }
            let anchored = pattern.hasPrefix("/") || pattern.contains("/")
            while pattern.hasPrefix("/") { pattern.removeFirst() }
            guard !pattern.isEmpty else { return false }
            // Every leading run of components (a directory, or the file itself when last).
            for end in 1...parts.count {
                if directoryOnly && end == parts.count { break }
                let candidates = anchored ? [parts[..<end].joined(separator: "/")] : [parts[end - 1]]
                if candidates.contains(where: { fnmatch(pattern, $0, FNM_PATHNAME) == 0 }) { return true }
            }
            return false
        }
    }
}
