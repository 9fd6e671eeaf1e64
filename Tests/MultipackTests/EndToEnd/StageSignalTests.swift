import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// SPEC §11, the red team's repro of #23 failure 5: SIGTERM in each stage of compile and of a
/// local build ends multipack within 5 seconds, non-zero, naming that stage, and what the child
/// printed last on its way out is in the log. Each stage is held by a slow child or a large input
/// and the signal sent once the stage has visibly begun.
@Suite(.serialized) struct StageSignalTests {
    enum Stage: String, CaseIterable {
        case fetching, downloading, extracting, detect, compile, export, release, preCompile, slugfilter, merging
        case slugPacking, buildCompile, ciTestScript
    }

    /// A script that says it waits, then says its last words (on stderr) when stopped. It marks
    /// its start in the log and in $READY where it has one (a captured stage's log is not seen).
    static let lastWords = """
        trap 'echo "last words of the child" >&2; exit 1' TERM
        echo "-----> waiting for a signal" >&2
        if [ -n "$READY" ]; then touch "$READY"; fi
        sleep 1000 & wait
        """

    @Test(arguments: Stage.allCases) func sigtermEndsTheStageWithinFiveSecondsNamingIt(_ stage: Stage) throws {
        let temp = try TempDir("stage-\(stage.rawValue)")
        let ready = temp.path + "/ready"
        var server: LoopbackHTTPServer?
        defer { server?.stop() }
        var buildpacks = ""
        var config: [String: String] = [:]
        var until: (BackgroundProcess) -> Bool = {
            FileManager.default.fileExists(atPath: ready) || $0.output.contains("waiting for a signal")
        }
        var expected: String
        var saysLastWords = false
        var local: [String]?
        let app = temp.sub("app")

        switch stage {
        case .fetching:
            server = try LoopbackHTTPServer(routes: [
                "/org/bp.git/info/refs": .stall(body: [UInt8](repeating: 0x30, count: 1000), after: 0)
            ])
            buildpacks = server!.url("/org/bp.git")
            until = { _ in server!.requestCount("/org/bp.git/info/refs") > 0 }
            expected = "stopped by SIGTERM while fetching buildpack [1/1] \(server!.url("/org/bp.git"))"
        case .downloading:
            server = try LoopbackHTTPServer(routes: [
                "/slow.tgz": .stall(body: [UInt8](repeating: 0x1f, count: 100_000), after: 1000)
            ])
            buildpacks = server!.url("/slow.tgz")
            until = { _ in server!.requestCount("/slow.tgz") > 0 }
            expected = "stopped by SIGTERM while downloading buildpack [1/1]"
        case .extracting:
            let archive = temp.path + "/big.tgz"
            #expect(try Shell.run("python3", [Repo.fixtures + "/signal-inputs.py", "archive", archive]).status == 0)
            buildpacks = "file://\(archive)"
            let tmp = temp.path + "/tmp"
            until = { _ in
                ((try? FileManager.default.subpathsOfDirectory(atPath: tmp)) ?? []).contains {
                    $0.hasSuffix("bin/compile")
                }
            }
            expected = "stopped by SIGTERM while extracting buildpack [1/1]"
        case .detect:
            // detect's output is captured (its name, and why it failed): only the stage is seen.
            buildpacks = try scriptedChild("slow", in: temp, detect: Self.lastWords)
            expected = "was in detect"
        case .compile:
            buildpacks = try scriptedChild("slow", in: temp, compile: Self.lastWords)
            expected = "was in compile"
            saysLastWords = true
        case .export:
            // The export is sourced with its output captured (for its error): only the stage is seen.
            try temp.write("export-script", Self.lastWords)
            buildpacks = try scriptedChild(
                "slow", in: temp, compile: "cp \(temp.path)/export-script \"$(dirname \"$0\")/../export\"")
            expected = "was in export"
        case .release:
            buildpacks = try scriptedChild("slow", in: temp, release: Self.lastWords)
            expected = "was in release"
            saysLastWords = true
        case .preCompile:
            try temp.write("app/bin/pre_compile", "#!/usr/bin/env bash\n\(Self.lastWords)\n", executable: true)
            buildpacks = try scriptedChild("quick", in: temp)
            expected = "while the app's bin/pre_compile was running"
            saysLastWords = true
        case .slugfilter:
            // 10,000 files and 2,000 rules that only the full matcher can rule out: seconds of work.
            buildpacks = try scriptedChild(
                "many", in: temp,
                compile: """
                    python3 -c 'import os, sys
                    for d in range(500):
                        os.makedirs(sys.argv[1] + "/tree/d%03d" % d)
                        for f in range(20): open(sys.argv[1] + "/tree/d%03d/f%02d.txt" % (d, f), "w").close()' "$1"
                    """)
            let rules = (0..<2000).map { "- *[0-9][0-9][0-9][0-9][0-9][0-9]?[!a]\($0 % 10 == 0 ? "" : "?")\n" }
            try rules.joined().write(toFile: app + "/.slugfilter", atomically: true, encoding: .utf8)
            config["MULTIPACK_SIZES"] = "0"
            until = { $0.output.contains("Trimming the slug with .slugfilter") }
            expected = "stopped by SIGTERM while .slugfilter was trimming the slug"
        case .merging:
            // Two releases of 300,000 config vars each; the line after .slugfilter's is the merge.
            let release = "python3 \(Repo.fixtures)/signal-inputs.py release"
            buildpacks =
                try scriptedChild("big-1", in: temp, release: release) + "\n"
                + scriptedChild("big-2", in: temp, release: release)
            try "- nothing-matches-this\n".write(toFile: app + "/.slugfilter", atomically: true, encoding: .utf8)
            config["MULTIPACK_SIZES"] = "0"
            until = { $0.output.contains("Nothing matched a `-` rule") }
            expected = "stopped by SIGTERM while the releases were being merged"
        case .slugPacking:
            // 300 MB that does not compress: seconds of deflate.
            buildpacks = try scriptedChild(
                "heavy", in: temp, compile: "head -c 300000000 /dev/urandom > \"$1/noise\"",
                release: "echo '--- {}'")
            let slug = temp.path + "/out/slug.tgz"
            try FileManager.default.createDirectory(atPath: temp.path + "/out", withIntermediateDirectories: true)
            local = ["build", app, "--slug", slug]
            // The slug is packed among what the build stages to keep (the app state's next/), and
            // goes to --slug's path only once it is whole and within the limits.
            until = { _ in
                let apps = temp.path + "/xdg/multipack/apps"
                let states = (try? FileManager.default.contentsOfDirectory(atPath: apps)) ?? []
                return states.contains { state in
                    ((try? FileManager.default.contentsOfDirectory(atPath: apps + "/" + state + "/next")) ?? [])
                        .contains { $0.hasPrefix("slug.tgz.partial-") }
                }
            }
            expected = "stopped by SIGTERM while the slug was being written"
        case .buildCompile:
            buildpacks = try scriptedChild("slow", in: temp, compile: Self.lastWords)
            local = ["build", app]
            expected = "was in compile"
            saysLastWords = true
        case .ciTestScript:
            buildpacks = try scriptedChild("quick", in: temp)
            let json = try JSONSerialization.data(withJSONObject: [
                "environments": ["test": ["scripts": ["test": Self.lastWords]]]
            ])
            try json.write(to: URL(fileURLWithPath: app + "/app.json"))
            local = ["ci", app]
            expected = "while app.json's test script was running"
            saysLastWords = true
        }
        try (buildpacks + "\n").write(toFile: app + "/.buildpacks", atomically: true, encoding: .utf8)

        let process: BackgroundProcess
        if let local {
            // Root's build without namespaces runs as an id that owns nothing, which must pass
            // through to the state directory under the test's directory.
            chmod(temp.path, 0o711)
            let env = [
                "XDG_CACHE_HOME": temp.sub("xdg"), "HOME": temp.sub("home"), "TMPDIR": temp.sub("tmp"),
                "READY": ready, "MULTIPACK_SANDBOX": stage == .slugPacking ? "off" : "",
                // This machine's system, as LocalWorld has it: these stages are not about the stack.
                "MULTIPACK_STACK_ROOT": "/",
            ]
            process = try BackgroundProcess(Repo.binary, local, environment: env, in: temp)
        } else {
            let cache = temp.sub("cache")
            let env = temp.sub("env")
            for (key, value) in config { try value.write(toFile: env + "/" + key, atomically: true, encoding: .utf8) }
            let mp = try Multipack(in: temp)
            process = try BackgroundProcess(
                mp.dir + "/bin/compile", [app, cache, env], environment: ["TMPDIR": temp.sub("tmp"), "READY": ready],
                in: temp)
        }
        let started = process.wait(until: { until(process) }, seconds: 120)
        #expect(started, "\(stage): the stage never began: \(process.output.suffix(3000))")
        let seconds = process.stop(with: SIGTERM)
        let output = process.output
        #expect(seconds < 5, "\(stage): took \(seconds) s")
        #expect(process.status != 0, "\(stage)")
        #expect(output.contains(expected), "\(stage): \(output.suffix(3000))")
        if saysLastWords { #expect(output.contains("last words of the child"), "\(stage): \(output.suffix(3000))") }
    }
}

/// Any command started in the background with its output in a file and a way to stop it.
final class BackgroundProcess {
    let process = Process()
    let outputPath: String

    init(_ executable: String, _ arguments: [String], environment: [String: String], in temp: TempDir) throws {
        outputPath = temp.path + "/output-\(UUID().uuidString).txt"
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = Multipack.environment(environment)
        let handle = try #require(FileHandle(forWritingAtPath: outputPath))
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }
    var status: Int32 { process.terminationStatus }

    func wait(until condition: () -> Bool, seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            if !process.isRunning { return condition() }
            usleep(20_000)
        }
        return false
    }

    /// Sends `signal` and returns how long the process took to end (killed after 30 s).
    func stop(with signal: Int32) -> Double {
        let sent = Date()
        kill(process.processIdentifier, signal)
        while process.isRunning && Date().timeIntervalSince(sent) < 30 { usleep(10_000) }
        let elapsed = Date().timeIntervalSince(sent)
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        return elapsed
    }
}
