import Foundation
import Testing

/// A child buildpack written by the test: its bin/detect, bin/compile and bin/release are the
/// given bash bodies (`$1` is BUILD_DIR).
func scriptedChild(
    _ name: String, in temp: TempDir, detect: String = "echo Scripted", compile: String = "true",
    release: String? = nil
) throws -> String {
    let dir = temp.sub("children/" + name)
    try temp.write("children/\(name)/bin/detect", "#!/usr/bin/env bash\n\(detect)\n", executable: true)
    try temp.write("children/\(name)/bin/compile", "#!/usr/bin/env bash\n\(compile)\n", executable: true)
    if let release {
        try temp.write("children/\(name)/bin/release", "#!/usr/bin/env bash\n\(release)\n", executable: true)
    }
    return dir
}

/// `bin/compile` running in the background with its own TMPDIR.
final class BackgroundCompile: BackgroundProcess {
    let tmp: String

    init(_ mp: Multipack, _ app: App, temp: TempDir, environment: [String: String] = [:]) throws {
        tmp = temp.sub("tmp")
        try super.init(
            mp.dir + "/bin/compile", [app.build, app.cache, app.env],
            environment: environment.merging(["TMPDIR": tmp]) { $1 }, output: temp.path + "/compile-output.txt")
    }
}

/// The pids a test's scripts wrote to files, and whether any is still running.
func survivors(_ files: [String]) -> [String] {
    usleep(100_000)
    return files.compactMap { file in
        guard let text = try? String(contentsOfFile: file, encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
        else { return nil }
        guard isRunning(pid) else { return nil }
        kill(pid, SIGKILL)
        return "\(file): \(pid)"
    }
}

/// The host's `sleep` processes whose argument is one of those listed in `file` (one per line):
/// found by their command line, so that it works whatever PID namespace they ran in. Each one
/// found is named in what comes back, and killed unless `kill` is false.
func survivingSleeps(listedIn file: String, kill killing: Bool = true) -> [String] {
    usleep(100_000)
    guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return ["\(file) was not written"] }
    let arguments = Set(text.split(separator: "\n").map(String.init))
    return commandLines().compactMap { pid, words in
        guard words.count == 2, words[0].hasSuffix("sleep"), arguments.contains(words[1]) else { return nil }
        if killing { kill(pid, SIGKILL) }
        return "sleep \(words[1]) (pid \(pid))"
    }
}

/// Whether the file a test's script touches once it is in its stage is there yet.
func touched(_ path: String) -> () -> Bool { { FileManager.default.fileExists(atPath: path) } }

/// SPEC §11: every stage stops within 5 seconds of SIGTERM/SIGINT/SIGHUP, nothing left running.
@Suite(.serialized) struct SignalTests {
    static let stopSignals: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT]

    /// Compiles an app that lists `buildpack`, sends `signal` once `ready` holds (and `settle`
    /// seconds more), and checks what every stage must do: end within 5 seconds, non-zero, with no
    /// summary. The build is returned for the stage's own checks.
    static func stop(
        _ buildpack: String, in temp: TempDir, with signal: Int32 = SIGTERM, settle: Double = 0,
        once ready: () -> Bool
    ) throws -> BackgroundCompile {
        let app = try App(nil, in: temp, buildpacks: buildpack + "\n")
        let build = try BackgroundCompile(try Multipack(in: temp), app, temp: temp)
        let started = build.wait(until: ready)
        #expect(started, "\(build.output)")
        usleep(UInt32(settle * 1_000_000))
        let seconds = build.stop(with: signal)
        #expect(seconds < 5, "took \(seconds) s")
        // As shells report a stop by signal N (SPEC §11).
        #expect(build.process.terminationStatus == 128 + signal, "\(build.output.suffix(2000))")
        #expect(!build.output.contains("Summary"), "\(build.output.suffix(2000))")
        return build
    }

    @Test(arguments: stopSignals) func aDetectThatIgnoresTheSignalIsKilledWithinFiveSeconds(_ signal: Int32) throws {
        let temp = try TempDir("sig-detect")
        let ready = temp.path + "/ready"
        let pids = [temp.path + "/detect.pid", temp.path + "/helper.pid"]
        let child = try scriptedChild(
            "trapper", in: temp,
            detect: """
                trap '' TERM INT HUP QUIT
                echo $$ > \(pids[0])
                (exec sleep 1000) & echo $! > \(pids[1])
                touch \(ready)
                sleep 1000
                """)
        let build = try Self.stop(child, in: temp, with: signal, once: touched(ready))
        #expect(build.output.contains("stopped by"), "\(build.output)")
        #expect(build.output.contains("was in detect"), "\(build.output)")
        #expect(survivors(pids).isEmpty)
    }

    @Test func aDaemonLeftOnDetectsOutputDoesNotHoldTheBuild() throws {
        let temp = try TempDir("sig-daemon")
        let pid = temp.path + "/daemon.pid"
        let child = try scriptedChild(
            "daemon", in: temp,
            detect: """
                setsid sleep 1000 & echo $! > \(pid)
                echo Daemonic
                """)
        let app = try App(nil, in: temp, buildpacks: child + "\n")
        let build = try BackgroundCompile(try Multipack(in: temp), app, temp: temp)
        let seconds = build.finish()
        #expect(seconds < 10, "took \(seconds) s")
        #expect(build.process.terminationStatus == 0, "\(build.output)")
        #expect(build.output.contains("(bin/detect) left a process running after it ended: sleep (pid"))
        #expect(survivors([pid]).isEmpty)
    }

    @Test func anExportThatHangsWithABackgroundJobStopsWithinFiveSeconds() throws {
        let temp = try TempDir("sig-export")
        let ready = temp.path + "/ready"
        let pids = [temp.path + "/job.pid"]
        let child = try scriptedChild(
            "exporter", in: temp,
            compile: """
                cat > export <<'EOF'
                export FROM_EXPORT=1
                (trap '' TERM; exec sleep 1000) & echo $! > \(pids[0])
                trap '' TERM
                touch \(ready)
                sleep 1000
                EOF
                """)
        let build = try Self.stop(child, in: temp, once: touched(ready))
        #expect(build.output.contains("was in export") || build.output.contains("stopped by SIGTERM"))
        #expect(survivors(pids).isEmpty)
    }

    @Test func processesACompileLeavesBehindAreStoppedAfterASuccessfulBuild() throws {
        let temp = try TempDir("leftovers")
        let pids = [temp.path + "/setsid.pid", temp.path + "/nohup.pid"]
        let child = try scriptedChild(
            "leaver", in: temp,
            compile: """
                setsid sleep 1000 > /dev/null 2>&1 & echo $! > \(pids[0])
                nohup sleep 1000 > /dev/null 2>&1 & echo $! > \(pids[1])
                echo "       started two daemons"
                """)
        let app = try App(nil, in: temp, buildpacks: child + "\n")
        let mp = try Multipack(in: temp)
        let compile = try mp.shim(
            "compile", [app.build, app.cache, app.env], environment: ["TMPDIR": temp.sub("tmp")])
        #expect(compile.status == 0, "\(compile.all)")
        #expect(compile.all.contains("Buildpack [1/1] Scripted (bin/compile) left 2 processes running"))
        #expect(survivors(pids).isEmpty)
    }

    @Test func aStalledDownloadStopsWithinFiveSeconds() throws {
        let temp = try TempDir("sig-download")
        let server = try LoopbackHTTPServer(routes: [
            "/stalled.tgz": .stall(body: [UInt8](repeating: 0x1f, count: 100_000), after: 1000)
        ])
        defer { server.stop() }
        let build = try Self.stop(
            server.url("/stalled.tgz"), in: temp, settle: 0.5, once: { server.requestCount("/stalled.tgz") > 0 })
        #expect(build.output.contains("stopped by SIGTERM while downloading buildpack [1/1]"), "\(build.output)")
    }

    @Test func aHugeReleaseBeingReadAndMergedStopsWithinFiveSeconds() throws {
        let temp = try TempDir("sig-release")
        let ready = temp.path + "/released"
        let child = try scriptedChild(
            "big-release", in: temp,
            release: """
                python3 \(Repo.fixtures)/signal-inputs.py release
                touch \(ready)
                """)
        let build = try Self.stop(child, in: temp, once: touched(ready))
        #expect(build.output.contains("stopped by SIGTERM"), "\(build.output.suffix(2000))")
    }

    @Test func extractingALargeArchiveStopsWithinFiveSeconds() throws {
        let temp = try TempDir("sig-extract")
        // 900 MB of zeros in one member: about 1 MB compressed, seconds to write out.
        let archive = temp.path + "/big.tgz"
        let made = try Shell.run("python3", [Repo.fixtures + "/signal-inputs.py", "archive", archive])
        #expect(made.status == 0, "\(made.all)")
        let tmp = temp.path + "/tmp"
        let build = try Self.stop("file://\(archive)", in: temp) {
            let entries = (try? FileManager.default.subpathsOfDirectory(atPath: tmp)) ?? []
            return entries.contains { $0.hasSuffix("bin/compile") }
        }
        #expect(build.output.contains("stopped by SIGTERM while extracting buildpack [1/1]"), "\(build.output)")
    }
}
