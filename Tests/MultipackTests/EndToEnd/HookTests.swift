import Foundation
import Testing

@testable import MultipackKit

/// The app's hooks as apps and buildpacks use them (SPEC §7.4), end to end through the bin/ shims.
/// Every build gets its own TMPDIR, which must be empty when the build is over (SPEC §5).
@Suite struct HookTests {
    @Test func hooksRunInPlaceWithTheirOwnPathSiblingsAndShebang() throws {
        let temp = try TempDir("hooks-in-place")
        let python = try gitChild("python", in: temp)
        let app = try App(nil, in: temp, buildpacks: "file://\(python)\n")
        try write(app, "requirements.txt", "flask\n")
        try write(app, "bin/common.sh", "greeting() { echo \"hello from common.sh\"; }\n")
        try write(
            app, "bin/pre_compile",
            """
            #!/usr/bin/env bash
            set -e
            source "$(dirname "$0")/common.sh"
            cd "$(dirname "$0")/.."
            echo "$0" > pre_compile.zero
            { greeting; pwd; } > pre_compile.out
            echo pre >> hooks.log

            """, executable: true)
        // No executable bit and not bash: run by its #! line, as the Python buildpack does.
        try write(
            app, "bin/post_compile",
            """
            #!/usr/bin/env python3
            import os, sys
            here = os.path.dirname(os.path.abspath(sys.argv[0]))
            with open(os.path.join(here, "..", "hooks.log"), "a") as log:
                log.write("post\\n")
            with open("post_compile.out", "w") as out:
                out.write("\\n".join([os.getcwd(), sys.argv[0], os.environ["BUILD_DIR"], os.environ["GREETING"]]))
            print("post_compile says hello from python")

            """)
        try "hi\n".write(toFile: app.env + "/GREETING", atomically: true, encoding: .utf8)
        let mp = try Multipack(in: temp)
        let tmp = temp.sub("tmp")

        let compile = try mp.shim("compile", [app.build, app.cache, app.env], environment: ["TMPDIR": tmp])
        #expect(compile.status == 0, "\(compile.all)")
        // Each ran once, by multipack: the Python-like child never saw them.
        #expect(app.read("hooks.log") == "pre\npost\n")
        #expect(!compile.stdout.contains("running bin/"))
        #expect(app.read("pre_compile.zero") == app.build + "/bin/pre_compile\n")
        #expect(app.read("pre_compile.out") == "hello from common.sh\n\(app.build)\n")
        #expect(app.read("post_compile.out") == "\(app.build)\n\(app.build)/bin/post_compile\n\(app.build)\nhi")
        #expect(compile.stdout.contains("post_compile says hello from python"))
        #expect(heldFiles(app).isEmpty)
        #expect(try leftovers(tmp).isEmpty)
    }

    @Test func monorepoChildBringsTheSubdirectorysHooksAndTheRootOnesStayGone() throws {
        let temp = try TempDir("hooks-monorepo")
        let monorepo = try gitChild("monorepo", in: temp)
        let python = try gitChild("python", in: temp)
        let log = temp.path + "/hooks.log"
        let app = try App(
            nil, in: temp, buildpacks: "file://\(monorepo)\nfile://\(python)\n",
            config: ["APP_BASE": "api", "HOOK_LOG": log])
        try write(app, "bin/pre_compile", "#!/usr/bin/env bash\necho root-pre >> \"$HOOK_LOG\"\n", executable: true)
        try write(app, "bin/post_compile", "#!/usr/bin/env bash\necho root-post >> \"$HOOK_LOG\"\n", executable: true)
        try write(app, "README", "the monorepo's root\n")
        try write(app, "api/requirements.txt", "flask\n")
        try write(app, "api/bin/pre_compile", "#!/usr/bin/env bash\necho sub-pre >> \"$HOOK_LOG\"\n", executable: true)
        let subPost = """
            #!/usr/bin/env bash
            # the api's own post_compile
            echo "sub-post $(command -v python) in $PWD" >> "$HOOK_LOG"

            """
        try write(app, "api/bin/post_compile", subPost, executable: true)
        let mp = try Multipack(in: temp)
        let tmp = temp.sub("tmp")

        let compile = try mp.shim("compile", [app.build, app.cache, app.env], environment: ["TMPDIR": tmp])
        #expect(compile.status == 0, "\(compile.all)")
        // The root's pre_compile ran before the first child; the subdirectory's pre_compile, brought
        // in by the monorepo child, before the next one; its post_compile once, after the last child,
        // with the Python-like child's exports applied. The Python-like child ran none of them.
        let python_ = "\(app.build)/.heroku/python/bin/python"
        let ran = try String(contentsOfFile: log, encoding: .utf8)
        #expect(ran == "root-pre\nsub-pre\nsub-post \(python_) in \(app.build)\n")
        #expect(!compile.stdout.contains("running bin/"))
        // The app is the subdirectory now, with its own hooks, byte for byte; the root's are gone.
        #expect(app.read("bin/post_compile") == subPost)
        #expect(app.read("bin/pre_compile") == "#!/usr/bin/env bash\necho sub-pre >> \"$HOOK_LOG\"\n")
        #expect(!app.exists("README") && !app.exists("api") && app.exists("requirements.txt"))
        #expect(heldFiles(app).isEmpty)
        #expect(try leftovers(tmp).isEmpty)
    }

    @Test func inlineChildRunsTheAppsBuildScriptWithTheHooksHidden() throws {
        let temp = try TempDir("hooks-inline")
        let inline = try gitChild("inline", in: temp)
        let app = try App(nil, in: temp, buildpacks: "file://\(inline)\n")
        try write(app, "bin/helpers.sh", "built_by() { echo \"built by $1\"; }\n")
        try write(
            app, "bin/compile",
            """
            #!/usr/bin/env bash
            set -e
            source "$(dirname "$0")/helpers.sh"
            built_by "the app's own script" > "$1/built.txt"
            ls -A "$1/bin" | grep -c _compile > "$1/hooks-seen-by-compile.txt" || true

            """)
        // No #! line and no executable bit: bash runs it.
        try write(app, "bin/post_compile", "source bin/helpers.sh\nbuilt_by post_compile >> built.txt\n")
        let mp = try Multipack(in: temp)
        let tmp = temp.sub("tmp")

        let compile = try mp.shim("compile", [app.build, app.cache, app.env], environment: ["TMPDIR": tmp])
        #expect(compile.status == 0, "\(compile.all)")
        #expect(app.read("built.txt") == "built by the app's own script\nbuilt by post_compile\n")
        // The app's build script saw the hook under its held name only, never as bin/post_compile.
        #expect(app.read("hooks-seen-by-compile.txt") == "1\n")
        #expect(app.exists("bin/post_compile") && heldFiles(app).isEmpty)
        #expect(try leftovers(tmp).isEmpty)
    }

    @Test func aRebuildAfterSIGKILLPutsTheHeldHooksBackAndRunsThem() throws {
        let temp = try TempDir("hooks-sigkill")
        let slow = try gitChild("slow", in: temp)
        let node = try gitChild("node", in: temp)
        let app = try App("python-node", in: temp, buildpacks: "file://\(slow)\n")
        let mp = try Multipack(in: temp)
        let tmp = temp.sub("tmp")

        let process = try start(mp, "compile", [app.build, app.cache, app.env], tmp: tmp)
        try waitFor(app, "slow-compile.pid", process)
        #expect(heldFiles(app) == [".multipack-held-post_compile", ".multipack-held-pre_compile"])
        kill(process.processIdentifier, SIGKILL)
        // The children die with it or are stopped here; either way nothing of theirs runs on (and
        // Foundation sees the end of the process only once every holder of its pipe is gone).
        for file in ["slow-compile.pid", "slow-helper.pid"] {
            if let pid = Int32(app.read(file)?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") {
                kill(-pid, SIGKILL)
                kill(pid, SIGKILL)
            }
        }
        process.waitUntilExit()
        #expect(try leftovers(tmp).contains { $0.hasPrefix("multipack-children-\(process.processIdentifier)-") })
        // The killed compile is no "succeeded" build, and has no release.
        let report = try mp.shim("report", [app.build, app.cache, app.env])
        #expect(report.stdout.contains("outcome: \"killed\""), "\(report.all)")
        #expect(try mp.shim("release", [app.build]).stdout == "--- {}\n")

        try "file://\(node)\n".write(toFile: app.build + "/.buildpacks", atomically: true, encoding: .utf8)
        let rebuild = try mp.shim("compile", [app.build, app.cache, app.env], environment: ["TMPDIR": tmp])
        #expect(rebuild.status == 0, "\(rebuild.all)")
        #expect(rebuild.stdout.contains("Put back bin/post_compile"))
        #expect(app.read("post_compile.log")?.split(separator: "\n").count == 1)
        #expect(app.exists("bin/pre_compile") && app.exists("bin/post_compile") && heldFiles(app).isEmpty)
        // The dead build's private directory was swept, and this one's removed.
        #expect(try leftovers(tmp).isEmpty)
    }

    @Test func anExportThatEndsTheShellEarlyFailsTheBuild() throws {
        for ending in ["exit 0", "exec true"] {
            let temp = try TempDir("hooks-export-exit")
            let early = temp.path + "/early"
            try FileManager.default.createDirectory(atPath: early + "/bin", withIntermediateDirectories: true)
            try script(early + "/bin/detect", "echo 'Early exit (fixture)'")
            try script(
                early + "/bin/compile",
                "printf 'export EARLY=1\\nif true; then \(ending); fi\\n' > \"$(dirname \"$0\")/../export\"")
            let probe = try gitChild("env-probe", in: temp)
            let app = try App("python-node", in: temp, buildpacks: "\(early)\nfile://\(probe)\n")
            let mp = try Multipack(in: temp)
            let compile = try mp.shim(
                "compile", [app.build, app.cache, app.env], environment: ["TMPDIR": temp.sub("tmp")])
            #expect(compile.status == 1, "\(ending): \(compile.all)")
            #expect(compile.stderr.contains("Buildpack [1/2] Early exit (fixture) failed during export"), "\(ending)")
            #expect(compile.stderr.contains("ended the shell early"), "\(ending): \(compile.stderr)")
            #expect(!app.exists("env-probe.txt"), "\(ending): a later child ran")
        }
    }
}

/// Per-build state (SPEC §7.5) and temporary files (SPEC §5).
@Suite struct BuildStateTests {
    @Test func twoBuildsSharingOneMultipackDirectoryEachGetTheirOwnRelease() throws {
        let temp = try TempDir("state-two")
        let node = try gitChild("node", in: temp)
        let python = try gitChild("python", in: temp)
        let firstTemp = try TempDir("state-two-first")
        let secondTemp = try TempDir("state-two-second")
        let first = try App("python-node", in: firstTemp, buildpacks: "file://\(node)\n")
        let second = try App("python-node", in: secondTemp, buildpacks: "file://\(python)\n")
        let mp = try Multipack(in: temp)
        let tmp = temp.sub("tmp")
        for app in [first, second] {
            let compile = try mp.shim("compile", [app.build, app.cache, app.env], environment: ["TMPDIR": tmp])
            #expect(compile.status == 0, "\(compile.all)")
        }
        let one = try mp.shim("release", [first.build]).stdout
        let two = try mp.shim("release", [second.build]).stdout
        #expect(one.contains("assets") && !one.contains("gunicorn"), "\(one)")
        #expect(two.contains("gunicorn") && !two.contains("assets"), "\(two)")
        #expect(try mp.shim("report", [first.build]).stdout.contains("child_1_name: \"Node.js (fixture)\""))
        #expect(try mp.shim("report", [second.build]).stdout.contains("child_1_name: \"Python (fixture)\""))
        // A relative BUILD_DIR names the same build.
        #expect(try mp.shim("release", ["build"], in: firstTemp.path).stdout == one)
        #expect(try leftovers(tmp).isEmpty)
    }

    @Test func aFailedCompileLeavesNoEarlierSuccessOrRelease() throws {
        let temp = try TempDir("state-crash")
        let node = try gitChild("node", in: temp)
        let failing = try gitChild("fail-compile", in: temp)
        let app = try App("python-node", in: temp, buildpacks: "file://\(node)\n")
        let mp = try Multipack(in: temp)
        let tmp = temp.sub("tmp")
        #expect(try mp.shim("compile", [app.build, app.cache, app.env], environment: ["TMPDIR": tmp]).status == 0)
        #expect(try mp.shim("report", [app.build]).stdout.contains("outcome: \"succeeded\""))
        #expect(try mp.shim("release", [app.build]).stdout.contains("assets"))
        // The records and the export replaced along the way are gone with the build.
        let state = mp.dir + "/.multipack/builds/" + cacheKey(app.build)
        #expect(try FileManager.default.contentsOfDirectory(atPath: state) == ["record.json"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: mp.dir).filter { $0.contains(".partial-") } == [])

        // What a write killed half-way left in the build's state goes with the rest.
        try "half".write(toFile: state + "/record.json.partial-4000000-Xy12Zw", atomically: false, encoding: .utf8)
        try "file://\(failing)\n".write(toFile: app.build + "/.buildpacks", atomically: true, encoding: .utf8)
        #expect(try mp.shim("compile", [app.build, app.cache, app.env], environment: ["TMPDIR": tmp]).status == 1)
        let report = try mp.shim("report", [app.build]).stdout
        #expect(report.contains("outcome: \"failed\"") && !report.contains("succeeded"), "\(report)")
        #expect(try mp.shim("release", [app.build]).stdout == "--- {}\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: state) == ["record.json"])
        #expect(try leftovers(tmp).isEmpty)
    }

    @Test func tmpdirIsEmptyAfterSuccessFailureAndSIGTERM() throws {
        let temp = try TempDir("state-tmpdir")
        let node = try gitChild("node", in: temp)
        let python = try gitChild("python", in: temp)
        let failing = try gitChild("fail-compile", in: temp)
        let slow = try gitChild("slow", in: temp)
        let mp = try Multipack(in: temp)
        let lists = [
            "success": "file://\(node)\nfile://\(python)\n", "failure": "file://\(node)\nfile://\(failing)\n",
            "sigterm": "file://\(node)\nfile://\(slow)\n",
        ]
        for (outcome, list) in lists.sorted(by: { $0.key < $1.key }) {
            let appTemp = try TempDir("state-tmpdir-\(outcome)")
            let app = try App("python-node", in: appTemp, buildpacks: list)
            let tmp = temp.sub(outcome + "-tmp")
            if outcome == "sigterm" {
                let process = try start(mp, "compile", [app.build, app.cache, app.env], tmp: tmp)
                try waitFor(app, "slow-compile.pid", process)
                kill(process.processIdentifier, SIGTERM)
                process.waitUntilExit()
                #expect(process.terminationStatus != 0)
            } else {
                let compile = try mp.shim("compile", [app.build, app.cache, app.env], environment: ["TMPDIR": tmp])
                #expect(compile.status == (outcome == "success" ? 0 : 1), "\(compile.all)")
            }
            #expect(try leftovers(tmp).isEmpty, "\(outcome)")
            #expect(heldFiles(app).isEmpty, "\(outcome)")
        }
    }

    /// BUILD_DIR and CACHE_DIR on a tmpfs, TMPDIR and the buildpack on the disk: a rename between
    /// them would fail with EXDEV. The tmpfs lives in a user and mount namespace of the test's own.
    @Test func buildAndCacheDirsOnAnotherFilesystem() throws {
        let temp = try TempDir("state-otherfs")
        guard try Shell.run("unshare", ["-Urm", "true"]).status == 0 else {
            Issue.record("unshare -Urm is not available on this machine")
            return
        }
        let node = try gitChild("node", in: temp)
        let python = try gitChild("python", in: temp)
        let monorepo = try gitChild("monorepo", in: temp)
        let source = try App(
            nil, in: temp, buildpacks: "file://\(monorepo)\nfile://\(node)\nfile://\(python)\n",
            config: ["APP_BASE": "web"])
        try FileManager.default.copyItem(atPath: Repo.fixtures + "/apps/python-node", toPath: source.build + "/web")
        let mp = try Multipack(in: temp)
        let tmp = temp.sub("tmp")
        let mount = temp.sub("mnt")
        let results = temp.sub("results")
        try script(
            temp.path + "/inside.sh",
            """
            set -u
            mount -t tmpfs tmpfs "$MNT"
            cp -a "$SOURCE" "$MNT/build"
            mkdir "$MNT/cache"
            "$MP/bin/compile" "$MNT/build" "$MNT/cache" "$ENVDIR" > "$RESULTS/out" 2>&1
            echo $? > "$RESULTS/status"
            ls -A "$MNT/build/bin" > "$RESULTS/bin"
            cp "$MNT/build/post_compile.log" "$MNT/build/pre_compile.log" "$RESULTS/" 2>/dev/null
            stat -f -c %T "$MNT/build" > "$RESULTS/fs"
            # Again, warm: the children come from the cache on the tmpfs.
            cp -a "$SOURCE" "$MNT/build2"
            "$MP/bin/compile" "$MNT/build2" "$MNT/cache" "$ENVDIR" > "$RESULTS/out2" 2>&1
            echo $? > "$RESULTS/status2"
            ls -A "$MNT/build2/bin" > "$RESULTS/bin2"
            """)
        let run = try Shell.run(
            "unshare", ["-Urm", "bash", temp.path + "/inside.sh"],
            environment: Multipack.environment([
                "MNT": mount, "SOURCE": source.build, "ENVDIR": source.env, "MP": mp.dir,
                "RESULTS": results,
                "TMPDIR": tmp,
            ]))
        #expect(run.status == 0, "\(run.all)")
        func result(_ name: String) -> String {
            (try? String(contentsOfFile: results + "/" + name, encoding: .utf8)) ?? ""
        }
        #expect(result("fs") == "tmpfs\n")
        #expect(result("status") == "0\n", "\(result("out"))")
        #expect(result("pre_compile.log").split(separator: "\n").count == 1)
        #expect(result("post_compile.log").split(separator: "\n").count == 1, "\(result("out"))")
        #expect(result("bin") == "post_compile\npre_compile\n")
        #expect(result("status2") == "0\n", "\(result("out2"))")
        #expect(result("bin2") == "post_compile\npre_compile\n")
        #expect(try leftovers(tmp).isEmpty)
    }
}

private func write(_ app: App, _ relative: String, _ text: String, executable: Bool = false) throws {
    let path = app.build + "/" + relative
    try FileManager.default.createDirectory(
        atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try text.write(toFile: path, atomically: false, encoding: .utf8)
    try FileManager.default.setAttributes([.posixPermissions: executable ? 0o755 : 0o644], ofItemAtPath: path)
}

private func script(_ path: String, _ body: String) throws {
    try ("#!/usr/bin/env bash\n" + body + "\n").write(toFile: path, atomically: false, encoding: .utf8)
    try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
}

/// What multipack renamed and left in `bin/`.
private func heldFiles(_ app: App) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: app.build + "/bin")) ?? [])
        .filter { $0.hasPrefix(".multipack-held-") }.sorted()
}

/// Whatever is in a build's TMPDIR.
private func leftovers(_ tmp: String) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: tmp)
}

private func start(_ mp: Multipack, _ verb: String, _ arguments: [String], tmp: String) throws -> Process {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: mp.dir + "/bin/" + verb)
    process.arguments = arguments
    process.environment = Multipack.environment(["TMPDIR": tmp])
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    return process
}

private func waitFor(_ app: App, _ file: String, _ process: Process) throws {
    let deadline = Date().addingTimeInterval(60)
    while !app.exists(file) {
        guard Date() < deadline, process.isRunning else {
            process.terminate()
            throw TestFailure("\(file) never appeared")
        }
        usleep(20_000)
    }
}
