import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// SPEC §11: when multipack itself is killed on the Heroku path (`bin/compile`, no namespaces),
/// nothing a compile started outlives it. Its children die with it (PR_SET_PDEATHSIG); what they
/// started in their process groups is killed by the watchdog, which waits for multipack's end of
/// a pipe to close. Issue #23 found a grandchild left in 3 of 15 trials.
@Suite struct WatchdogTests {
    @Test func aSIGKILLOfCompileLeavesNoProcessInThirtyTrials() throws {
        let temp = try TempDir("watchdog")
        let mp = try Multipack(in: temp)
        let child = try scriptedChild(
            "grandchildren", in: temp,
            compile: """
                sleep 301 &
                echo $! > "$1/background.pid"
                ( sleep 302; true ) &
                echo $! > "$1/subshell.pid"
                echo "       started"
                sleep 303
                """)
        var left: [String] = []
        for trial in 1...30 {
            let trialTemp = try TempDir("watchdog-trial")
            let app = try App(nil, in: trialTemp, buildpacks: child + "\n")
            let compile = try BackgroundCompile(mp, app, temp: trialTemp)
            let started = compile.wait(until: {
                FileManager.default.fileExists(atPath: app.build + "/subshell.pid")
                    && compile.output.contains("started")
            })
            #expect(started, "trial \(trial): \(compile.output)")
            kill(compile.process.processIdentifier, SIGKILL)
            compile.process.waitUntilExit()
            // The watchdog acts at once; a loaded machine may take a moment to schedule it.
            let deadline = Date().addingTimeInterval(5)
            while !Self.processes(mentioning: trialTemp.path).isEmpty && Date() < deadline { usleep(20_000) }
            let found = Self.processes(mentioning: trialTemp.path)
            left += found.map { "trial \(trial): \($0)" }
            for line in found { if let pid = Int32(line.split(separator: " ")[0]) { kill(pid, SIGKILL) } }
            left += survivors(["background.pid", "subshell.pid"].map { app.build + "/" + $0 }).map {
                "trial \(trial): \($0)"
            }
        }
        #expect(left.isEmpty, "\(left)")
    }

    /// The live processes (zombies are dead) whose command line or working directory names
    /// `path`: the compile, its children and multipack's watchdog all do, `sleep` through its
    /// working directory (the build directory).
    static func processes(mentioning path: String) -> [String] {
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap { Int32($0) } ?? []
        return pids.compactMap { pid -> String? in
            guard pid != getpid(), isRunning(pid) else { return nil }
            let command = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline").map {
                String(decoding: $0.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
            }
            let directory = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd")
            guard command?.contains(path) == true || directory?.hasPrefix(path) == true else { return nil }
            return "\(pid) \(command ?? "")"
        }
    }
}
