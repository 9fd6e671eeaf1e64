import FoundationEssentials
import Glibc

/// `multipack build APP_DIR`: what Heroku's slug compiler does, on this machine. The app is
/// copied into a fresh build directory and multipack's own detect/compile/release run over it as
/// separate processes, exactly as Heroku would start them.
public struct LocalBuild {
    public var appDir: String
    public var configVars: [String: String] = [:]
    public var cacheDir: String?
    public var invocation: Invocation

    public init(appDir: String, invocation: Invocation) {
        self.appDir = Files.absolute(appDir)
        self.invocation = invocation
    }

    var log: Log { invocation.log }

    /// The per-app directory that keeps the cache and the env dir between runs.
    var appStateDir: String {
        let env = invocation.environment
        let base = env["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? ((env["HOME"] ?? "/tmp") + "/.cache")
        let name = appDir.split(separator: "/").last.map(String.init) ?? "app"
        return "\(base)/multipack/apps/\(name)-\(cacheKey(appDir).prefix(8))"
    }

    /// Runs the build and returns its exit code.
    public func run() throws -> Int32 {
        guard Files.isDirectory(appDir) else { throw UsageError("\(appDir) is not a directory.") }
        let buildDir = try Self.freshBuildDirectory()
        log.step("Building \(appDir) in \(buildDir)")
        try Files.copyTree(appDir, to: buildDir + "/app")
        // The copy sits one level down so the build directory itself is the fresh build_<hex>.
        for name in Files.list(buildDir + "/app") { try Files.move(buildDir + "/app/" + name, to: buildDir + "/" + name) }
        Files.remove(buildDir + "/app")
        Files.remove(buildDir + "/.git")

        let cache = cacheDir.map(Files.absolute) ?? appStateDir + "/cache"
        let envDir = appStateDir + "/env"
        try Files.makeDirectory(cache)
        Files.remove(envDir)
        try Files.makeDirectory(envDir)
        for (name, value) in configVars { try Files.write(value, to: envDir + "/" + name) }
        log.detail("Cache: \(cache)")

        let buildpackDir = try Files.temporaryDirectory(prefix: "multipack-buildpack-")
        var environment = invocation.environment
        environment["MULTIPACK_BUILDPACK_DIR"] = buildpackDir
        environment["MULTIPACK_APP_DIR"] = appDir
        let me = Self.executablePath()

        func step(_ arguments: [String], output: Command.Output = .inherit) throws -> ProcessResult {
            try Spawner.run(Command(me, arguments, environment: environment, stdout: output, stderr: .inherit))
        }
        let detect = try step(["detect", buildDir], output: .capture)
        guard detect.termination.succeeded else { return 1 }
        log.step("\(detect.stdoutText.trimmingCharacters("\n")) app detected")
        let compile = try step(["compile", buildDir, cache, envDir])
        if SignalForwarding.stopSignal != nil { return 1 }
        guard compile.termination.succeeded else {
            if case .exited(let code) = compile.termination { return code }
            return 1
        }
        let release = try step(["release", buildDir], output: .capture)
        guard release.termination.succeeded else { return 1 }
        let defaults = (try? Release.parse(release.stdoutText)) ?? Release()
        let procfile = Procfile.read(buildDir + "/Procfile")
        log.step("Discovering process types")
        log.detail("Procfile declares types     -> \(procfile.isEmpty ? "(none)" : procfile.map(\.key).joined(separator: ", "))")
        let defaultTypes = defaults.processTypes.filter { type in !procfile.contains { $0.key == type.key } }
        log.detail("Default types for buildpack -> \(defaultTypes.isEmpty ? "(none)" : defaultTypes.map(\.key).joined(separator: ", "))")
        var processTypes = defaults.processTypes
        for (key, value) in procfile { processTypes.upsert(key, value) }
        for (key, value) in processTypes { log.detail("\(key): \(value)") }
        log.step("Build directory: \(buildDir)")
        return 0
    }

    static func freshBuildDirectory() throws -> String {
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var generator = SystemRandomNumberGenerator()
        while true {
            let hex = String(generator.next() as UInt32, radix: 16).leftPadded(to: 8)
            let path = "\(base)/build_\(hex)"
            if mkdir(path, 0o700) == 0 { return path }
            if errno != EEXIST { throw FileError(path: path, action: "create", errno: errno) }
        }
    }

    static func executablePath() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return CommandLine.arguments[0] }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// The app's Procfile: `type: command` per line.
enum Procfile {
    static func read(_ path: String) -> [(key: String, value: String)] {
        guard let text = try? Files.read(path) else { return [] }
        var entries: [(key: String, value: String)] = []
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].trimmingBlanks()
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else { continue }
            entries.upsert(String(key), String(line[line.index(after: colon)...].trimmingBlanks()))
        }
        return entries
    }
}
