import Foundation
import Testing

@testable import MultipackKit

/// The checkout, the built binary and throwaway directories for end-to-end tests.
enum Repo {
    static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 { url.deleteLastPathComponent() }
        return url.path
    }()

    static var fixtures: String { root + "/fixtures" }

    /// `multipack` as SwiftPM built it next to this test bundle.
    static let binary: String = {
        let me =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: me).deletingLastPathComponent()
        if dir.lastPathComponent.hasSuffix(".xctest") { dir.deleteLastPathComponent() }
        return dir.appendingPathComponent("multipack").path
    }()

    /// The binary started in the background with `arguments`, its output going to `log` (made
    /// empty first) and its input from /dev/null. The caller waits for it or kills it.
    static func start(_ arguments: [String], environment: [String: String], log: String) throws -> Process {
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.environment = environment
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return process
    }
}

/// A temporary directory removed when the test is done with it.
final class TempDir {
    let path: String

    init(_ name: String = "t") throws {
        path = try Shell.run("mktemp", ["-d", "/tmp/multipack-test-\(name)-XXXXXX"]).stdout.trimmingCharacters(
            in: .whitespacesAndNewlines)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func sub(_ name: String) -> String {
        let p = path + "/" + name
        try? FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }

    func write(_ relative: String, _ text: String, executable: Bool = false) throws {
        let p = path + "/" + relative
        try FileManager.default.createDirectory(
            atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        if executable { try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: p) }
    }
}

struct Output {
    var status: Int32
    var stdout: String
    var stderr: String
    var all: String { stdout + stderr }
}

enum Shell {
    /// Runs a command to completion, reading both pipes concurrently.
    @discardableResult
    static func run(
        _ executable: String, _ arguments: [String], in directory: String? = nil, environment: [String: String]? = nil
    ) throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable.hasPrefix("/") ? executable : "/usr/bin/env")
        process.arguments = executable.hasPrefix("/") ? arguments : [executable] + arguments
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        process.environment = environment ?? Multipack.environment([:])
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let group = DispatchGroup()
        nonisolated(unsafe) var errData = Data()
        group.enter()
        DispatchQueue.global().async {
            errData = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return Output(
            status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self))
    }

    static func git(_ arguments: [String], in directory: String) throws {
        let result = try run("git", arguments, in: directory, environment: gitEnvironment)
        if result.status != 0 { throw TestFailure("git \(arguments.joined(separator: " ")) failed: \(result.all)") }
    }

    static func gitOutput(_ arguments: [String], in directory: String) throws -> String {
        try run("git", arguments, in: directory, environment: gitEnvironment).stdout.trimmingCharacters(
            in: .whitespacesAndNewlines)
    }

    static let gitEnvironment: [String: String] = {
        var env = ProcessInfo.processInfo.environment
        env["GIT_AUTHOR_NAME"] = "Fixture"
        env["GIT_AUTHOR_EMAIL"] = "fixture@example.com"
        env["GIT_COMMITTER_NAME"] = "Fixture"
        env["GIT_COMMITTER_EMAIL"] = "fixture@example.com"
        env["GIT_CONFIG_GLOBAL"] = "/dev/null"
        env["GIT_CONFIG_NOSYSTEM"] = "1"
        return env
    }()
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A copy of multipack laid out as a buildpack (shims + the built binary under vendor/), so that
/// the tests drive the real bin/ scripts and nothing is written into the checkout.
struct Multipack {
    let dir: String
    /// The TMPDIR of the builds the shims start, unless a test gives its own: inside the test's
    /// temp dir, so that a test that is killed leaves nothing of multipack's in /tmp.
    let tmp: String

    init(in temp: TempDir) throws {
        dir = temp.sub("multipack-buildpack")
        tmp = temp.sub("tmp")
        let fm = FileManager.default
        for item in ["bin", "lib", "buildpack.toml"] {
            try fm.copyItem(atPath: Repo.root + "/" + item, toPath: dir + "/" + item)
        }
        try fm.createDirectory(atPath: dir + "/vendor", withIntermediateDirectories: true)
        let arch = try Shell.run("uname", ["-m"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try fm.createSymbolicLink(atPath: dir + "/vendor/multipack-\(arch)", withDestinationPath: Repo.binary)
    }

    /// Runs one of the bin/ shims.
    @discardableResult
    func shim(
        _ verb: String, _ arguments: [String], in directory: String? = nil, environment extra: [String: String] = [:]
    ) throws -> Output {
        try Shell.run(
            dir + "/bin/" + verb, arguments, in: directory,
            environment: Self.environment(["TMPDIR": tmp].merging(extra) { $1 }))
    }

    /// The test process's environment, made safe for the binary: no test reaches the internet.
    /// Builds and runs are on this machine's own system (`--stack-root /`) unless a test says
    /// otherwise (StackBuildTests set `MULTIPACK_STACK_ROOT` empty, with a loopback registry), and
    /// an image named by its Docker Hub name is asked of a closed loopback port, never of Docker Hub.
    static func environment(_ extra: [String: String]) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["BUILDPACK_XTRACE"] = nil
        env["MULTIPACK_BUILDPACK_DIR"] = nil
        env["MULTIPACK_STACK_ROOT"] = "/"
        env["MULTIPACK_STACK_REGISTRY"] = closedRegistry
        for (key, value) in extra { env[key] = value }
        return env
    }

    /// The discard port on loopback: nothing listens there, so a pull fails at once.
    static let closedRegistry = "http://127.0.0.1:9"
}

/// A fixture child buildpack turned into a git repository in a temp dir: the test's "remote".
func gitChild(_ name: String, in temp: TempDir, as repoName: String? = nil) throws -> String {
    let repo = temp.path + "/remotes/" + (repoName ?? name)
    try FileManager.default.createDirectory(atPath: temp.path + "/remotes", withIntermediateDirectories: true)
    try FileManager.default.copyItem(atPath: Repo.fixtures + "/buildpacks/" + name, toPath: repo)
    try Shell.git(["init", "--quiet", "--initial-branch=main"], in: repo)
    try Shell.git(["add", "-A"], in: repo)
    try Shell.git(["commit", "--quiet", "-m", "fixture \(name)"], in: repo)
    return repo
}

/// A fixture app copied into a temp dir with the given `.buildpacks`, plus cache and env dirs.
struct App {
    let build: String
    let cache: String
    let env: String

    init(
        _ fixture: String?, in temp: TempDir, buildpacks: String?, config: [String: String] = [:],
        name: String = "build"
    ) throws {
        build = temp.path + "/" + name
        if let fixture {
            try FileManager.default.copyItem(atPath: Repo.fixtures + "/apps/" + fixture, toPath: build)
        } else {
            try FileManager.default.createDirectory(atPath: build, withIntermediateDirectories: true)
        }
        cache = temp.sub("cache")
        env = temp.sub("env")
        if let buildpacks { try buildpacks.write(toFile: build + "/.buildpacks", atomically: true, encoding: .utf8) }
        for (key, value) in config { try value.write(toFile: env + "/" + key, atomically: true, encoding: .utf8) }
    }

    func read(_ relative: String) -> String? { try? String(contentsOfFile: build + "/" + relative, encoding: .utf8) }
    func exists(_ relative: String) -> Bool { FileManager.default.fileExists(atPath: build + "/" + relative) }
}

/// The usage error (exit 2) `body` throws; an issue is recorded when it throws none, or another.
@discardableResult
func expectUsageError(
    sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) -> MultipackError? {
    let error = #expect(throws: MultipackError.self, sourceLocation: sourceLocation) { try body() }
    #expect(
        error?.kind == .usage && error?.exitCode == 2, "\(String(describing: error))", sourceLocation: sourceLocation)
    return error
}

/// Every process on this machine, with the words of its command line (read from /proc, so that it
/// sees a process in any PID namespace; one that ended meanwhile is left out).
func commandLines() -> [(pid: Int32, words: [String])] {
    let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap { Int32($0) } ?? []
    return pids.compactMap { pid in
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
        return (pid, data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) })
    }
}
