import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `multipack run` as `heroku local` and a dyno give it (SPEC §17): every process type together,
/// one-off commands that read the caller's input and get a terminal of their own.
@Suite struct DynoTests {
    /// A built app (the probe child) whose Procfile is `procfile`.
    static func builtApp(_ sandbox: SandboxWorld, procfile: String, files: [String: String] = [:]) throws -> String {
        let app = try sandbox.app(["probe"], files: files.merging(["Procfile": procfile]) { $1 })
        let build = try sandbox.multipack(["build", app])
        #expect(build.status == 0, "\(build.all)")
        return app
    }

    /// Processes whose command line holds `mark`, on this machine.
    static func survivors(_ mark: String) -> [String] {
        let ps = (try? Shell.run("ps", ["-eo", "pid=,args="]))?.stdout ?? ""
        return ps.split(separator: "\n").map(String.init).filter { $0.contains(mark) && !$0.contains("ps -eo") }
    }

    @Test(arguments: ["bubblewrap", "direct", "off"])
    func everyTypeRunsTogetherPrefixedAndTheOthersStopWhenOneExits(backend: String) throws {
        let sandbox = try SandboxWorld(
            "dyno-formation-\(backend)", runner: .caller, caller: ["MULTIPACK_SANDBOX": backend])
        let mark = "3007\(getpid())\(backend.count)"
        let app = try Self.builtApp(
            sandbox,
            procfile: """
                web: echo "web on $PORT as $DYNO"; sleep 1; echo web done; exit 3
                worker: sleep \(mark) & trap 'echo "worker got TERM"; exit 0' TERM; echo "worker on $PORT as $DYNO"; wait
                release: echo the release phase never runs here

                """)
        let run = try sandbox.multipack(["run", app])
        #expect(run.status == 3, "\(run.all)")
        let lines = run.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains("web.1    | web on 5000 as web.1"), "\(run.all)")
        #expect(lines.contains("worker.1 | worker on 5100 as worker.1"))
        #expect(lines.contains("web.1    | web done"))
        #expect(lines.contains("worker.1 | worker got TERM"))
        #expect(lines.allSatisfy { $0.hasPrefix("web.1    | ") || $0.hasPrefix("worker.1 | ") }, "\(lines)")
        #expect(!run.all.contains("release phase"))
        // No colours when stdout is not a terminal.
        #expect(!run.stdout.contains("\u{1B}["))
        #expect(run.stderr.contains("web.1 ended with exit code 3: stopping worker.1 (SIGTERM, then SIGKILL after 30"))
        #expect(Self.survivors(mark).isEmpty, "\(Self.survivors(mark))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: sandbox.world.tmp).isEmpty)

        // Named types, another first port.
        let named = try sandbox.multipack(["run", app, "worker", "web", "-p", "6000"])
        #expect(named.status == 3, "\(named.all)")
        #expect(named.stdout.contains("web.1    | web on 6000 as web.1\n"), "\(named.all)")
        #expect(named.stdout.contains("worker.1 | worker on 6100 as worker.1\n"))
        #expect(Self.survivors(mark).isEmpty)

        // Another Procfile (-f), relative to where multipack runs.
        try sandbox.world.temp.write("Procfile.dev", "clock: echo \"tick on $PORT as $DYNO\"\n")
        let other = try sandbox.multipack(["run", app, "-f", "Procfile.dev"])
        #expect(other.status == 0 && other.stdout == "clock.1 | tick on 5000 as clock.1\n", "\(other.all)")
    }

    /// A type that ignores SIGTERM gets SIGKILL after the grace; its daemon goes with it.
    @Test(arguments: ["bubblewrap", "off"])
    func aTypeThatIgnoresSIGTERMIsKilledAfterTheGrace(backend: String) throws {
        let sandbox = try SandboxWorld("dyno-grace-\(backend)", runner: .caller, caller: ["MULTIPACK_SANDBOX": backend])
        let mark = "3008\(getpid())\(backend.count)"
        let app = try Self.builtApp(
            sandbox,
            procfile: """
                web: while [ ! -e ready ]; do sleep 0.1; done; echo started; exit 0
                stubborn: trap '' TERM; sleep \(mark) & touch ready; echo ignoring; while true; do sleep 0.1; done

                """)
        let run = try sandbox.multipack(["run", app, "--grace", "1"])
        #expect(run.status == 0, "\(run.all)")
        #expect(run.stderr.contains("stopping stubborn.1 (SIGTERM, then SIGKILL after 1.00s)"), "\(run.stderr)")
        #expect(run.stderr.contains("stubborn.1 ended with signal SIGKILL"), "\(run.stderr)")
        #expect(Self.survivors(mark).isEmpty, "\(Self.survivors(mark))")
    }

    /// Ctrl-C (SIGINT to multipack run) stops every type; run exits 130, nothing left.
    @Test(arguments: ["bubblewrap", "direct", "off"])
    func ctrlCStopsEveryType(backend: String) throws {
        let sandbox = try SandboxWorld("dyno-int-\(backend)", runner: .caller, caller: ["MULTIPACK_SANDBOX": backend])
        let mark = "3009\(getpid())\(backend.count)"
        let app = try Self.builtApp(
            sandbox,
            procfile: """
                web: sleep \(mark)1 & echo web-up; wait
                worker: sleep \(mark)2 & echo worker-up; wait

                """)
        let log = sandbox.world.temp.path + "/run.log"
        let process = try Repo.start(
            ["run", app], environment: sandbox.world.environment.merging(sandbox.caller) { $1 }, log: log)
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        let output = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        let started = Date()
        // Both printed (the log's own lines name the commands: the prefixed ones are the processes').
        let up = { output().contains("| web-up") && output().contains("| worker-up") }
        while process.isRunning && !up() && Date().timeIntervalSince(started) < 30 { usleep(20_000) }
        try #require(up(), "\(output())")
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        #expect(process.terminationStatus == 130, "\(output())")
        #expect(output().contains("Stopped by SIGINT"), "\(output())")
        #expect(Self.survivors(mark).isEmpty, "\(Self.survivors(mark))")
    }

    @Test(arguments: ["bubblewrap", "direct", "off"])
    func aOneOffCommandReadsTheCallersInput(backend: String) throws {
        let sandbox = try SandboxWorld("dyno-stdin-\(backend)", runner: .caller, caller: ["MULTIPACK_SANDBOX": backend])
        let app = try Self.builtApp(sandbox, procfile: "web: true\n")
        let run = try Shell.run(
            "bash", ["-c", "printf 'hi\\nthere\\n' | \"$0\" run \"$1\" -- cat", Repo.binary, app],
            environment: sandbox.world.environment.merging(sandbox.caller) { $1 })
        #expect(run.status == 0, "\(run.all)")
        #expect(run.stdout == "hi\nthere\n", "\(run.all)")
        // Its exit code is run's; without a terminal, /dev/tty opens nothing of the caller's.
        let code = try Shell.run(
            "bash",
            [
                "-c", "echo | \"$0\" run \"$1\" -- sh -c 'tty; (: </dev/tty) 2>/dev/null || echo no-tty; exit 9'",
                Repo.binary, app,
            ],
            environment: sandbox.world.environment.merging(sandbox.caller) { $1 })
        #expect(code.status == 9, "\(code.all)")
        #expect(code.stdout.contains("not a tty") && code.stdout.contains("no-tty"), "\(code.all)")
    }

    /// Through a pty (Python's `pty` module stands in for the caller's terminal): the command's
    /// own terminal, from the namespace's devpts, its size following the caller's window; Ctrl-C
    /// reaches it; the exit code is run's; the caller's terminal is restored.
    @Test(arguments: ["bubblewrap", "direct", "off"])
    func aOneOffCommandOnATerminalGetsATerminalOfItsOwn(backend: String) throws {
        let sandbox = try SandboxWorld("dyno-pty-\(backend)", runner: .caller, caller: ["MULTIPACK_SANDBOX": backend])
        let app = try Self.builtApp(sandbox, procfile: "web: true\n")
        let driver = sandbox.world.temp.path + "/drive_pty.py"
        try Self.ptyDriver.write(toFile: driver, atomically: true, encoding: .utf8)
        let script = """
            tty; stty size; echo RE""ADY; read line; stty size; echo "got $line"
            trap 'echo "got INT"; exit 5' INT; echo WAI""TING; while true; do sleep 0.1; done
            """
        let shell = """
            stty -g > "$0/before"; "$1" run "$2" -- bash -c "$3"; echo "STATUS $?"; stty -g > "$0/after"
            """
        let run = try Shell.run(
            "python3", [driver, "bash", "-c", shell, sandbox.world.temp.path, Repo.binary, app, script],
            environment: sandbox.world.environment.merging(sandbox.caller) { $1 })
        let text = run.stdout.replacing("\r\n", with: "\n")
        #expect(run.status == 0, "\(run.all)")
        let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        let tty = try #require(lines.first { $0.hasPrefix("/dev/") }, "\(text)")
        // The namespace's own devpts numbers from 0; the host's is shown without one.
        if backend != "off" { #expect(tty == "/dev/pts/0", "\(text)") }
        #expect(!text.contains("not a tty"))
        #expect(lines.contains("24 80"), "\(text)")
        #expect(lines.contains("40 120"), "the window size did not follow: \(text)")
        #expect(lines.contains("got go"), "\(text)")
        #expect(text.contains("got INT\n"), "\(text)")
        #expect(lines.contains("STATUS 5"), "\(text)")
        let before = try String(contentsOfFile: sandbox.world.temp.path + "/before", encoding: .utf8)
        let after = try String(contentsOfFile: sandbox.world.temp.path + "/after", encoding: .utf8)
        #expect(before == after, "the caller's terminal was not restored")
        #expect(try FileManager.default.contentsOfDirectory(atPath: sandbox.world.tmp).isEmpty)
    }

    /// Runs a command on a new pty of 24x80 and plays the caller: on READY it resizes the window
    /// to 40x120 (SIGWINCH to the command's group, as a terminal does) and types `go`; on WAITING
    /// it types Ctrl-C. Prints what the terminal showed.
    static let ptyDriver = #"""
        import fcntl, os, pty, select, signal, struct, sys, termios, time
        pid, fd = pty.fork()
        if pid == 0:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            os.execvp(sys.argv[1], sys.argv[1:])
        out, resized, interrupted = b"", False, False
        deadline = time.time() + 60
        while time.time() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    break
                if not data:
                    break
                out += data
            if b"READY" in out and not resized:
                fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
                os.killpg(os.tcgetpgrp(fd), signal.SIGWINCH)
                resized = True
                time.sleep(0.5)
                os.write(fd, b"go\r")
            if b"WAITING" in out and not interrupted:
                interrupted = True
                time.sleep(0.2)
                os.write(fd, b"\x03")
        os.waitpid(pid, 0)
        sys.stdout.write(out.decode(errors="replace"))
        """#

    /// `run SLUG` keeps a slug's links as they are: an absolute link into /app is followed inside.
    @Test(arguments: ["bubblewrap", "direct"])
    func aSlugsAbsoluteLinksIntoAppWork(backend: String) throws {
        let sandbox = try SandboxWorld("dyno-slug-\(backend)", runner: .caller, caller: ["MULTIPACK_SANDBOX": backend])
        let temp = sandbox.world.temp
        try temp.write("slug/app/.heroku/python/bin/python3", "the venv's python\n")
        try temp.write("slug/app/Procfile", "web: cat /app/link\n")
        let links = [
            ("slug/app/link", "/app/.heroku/python/bin/python3"), ("slug/app/relative", ".heroku/python/bin/python3"),
            ("slug/app/dangling", "/nowhere/at/all"), ("slug/app/system", "/usr/bin/env"),
        ]
        for (path, target) in links {
            try FileManager.default.createSymbolicLink(atPath: temp.path + "/" + path, withDestinationPath: target)
        }
        let slug = temp.path + "/venv.tgz"
        #expect(try Shell.run("tar", ["czf", slug, "-C", temp.path + "/slug", "./app"]).status == 0)
        let run = try sandbox.multipack([
            "run", slug, "--", "sh", "-c", "cat /app/link /app/relative; ls -l /app/dangling",
        ])
        #expect(run.status == 0, "\(run.all)")
        #expect(run.stdout.hasPrefix("the venv's python\nthe venv's python\n"), "\(run.all)")
        #expect(run.stdout.contains("/app/dangling -> /nowhere/at/all"))
        #expect(try sandbox.multipack(["run", slug, "web"]).stdout == "the venv's python\n")
    }

    /// What a slug may not do: write through a link, leave ./app/, be a link itself.
    @Test func aHostileSlugIsRefusedAndWritesNothingOutside() throws {
        let world = try LocalWorld("dyno-slug-hostile")
        let temp = world.temp
        let outside = temp.sub("outside")
        func slug(_ name: String, _ build: (String) throws -> Void) throws -> String {
            let root = temp.sub("hostile-" + name)
            try build(root)
            let path = temp.path + "/" + name + ".tgz"
            let members = try FileManager.default.contentsOfDirectory(atPath: root).map { "./" + $0 }
            #expect(try Shell.run("tar", ["czf", path, "-C", root] + members).status == 0)
            return path
        }
        let through = try slug("through") { root in
            try FileManager.default.createDirectory(atPath: root + "/app", withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: root + "/app/out", withDestinationPath: outside)
        }
        // A second archive member written through the link: tar can only make it by appending.
        try temp.write("evil/app/out/planted", "x\n")
        #expect(
            try Shell.run(
                "bash",
                [
                    "-c",
                    "gzip -d < \"$0\" > \"$0.tar\" && tar rf \"$0.tar\" -C \"$1\" ./app/out/planted && gzip < \"$0.tar\" > \"$0\"",
                    through, temp.path + "/evil",
                ]
            ).status == 0)
        let elsewhere = try slug("elsewhere") { root in
            try FileManager.default.createDirectory(atPath: root + "/etc", withIntermediateDirectories: true)
            try "x\n".write(toFile: root + "/etc/passwd", atomically: true, encoding: .utf8)
        }
        let linked = try slug("linked") { root in
            try FileManager.default.createSymbolicLink(atPath: root + "/app", withDestinationPath: outside)
        }
        for (path, reason) in [
            (through, "nothing is written through a symlink"),
            (elsewhere, "is not under ./app/, where a slug's files are"),
            (linked, "./app itself must be a directory in a slug"),
        ] {
            let run = try world.multipack(["run", path, "--", "true"])
            #expect(run.status == 2, "\(run.all)")
            #expect(run.stderr.contains("is not a slug multipack can extract"), "\(run.stderr)")
            #expect(run.stderr.contains(reason), "\(run.stderr)")
            #expect(!run.stderr.contains("buildpack"), "\(run.stderr)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty)
    }

    /// A dyno's config vars: the build's, then the app's .env, then -e (SPEC §17); none of
    /// multipack's own.
    @Test(arguments: ["bubblewrap", "off"])
    func configVarsComeFromTheBuildThenDotEnvThenFlags(backend: String) throws {
        let sandbox = try SandboxWorld(
            "dyno-config-\(backend)", runner: .caller,
            caller: ["MULTIPACK_SANDBOX": backend, "MULTIPACK_FETCH_PARALLELISM": "2"])
        let app = try sandbox.app(["probe"], files: [".env": "B=dotenv\nC=dotenv\n"])
        let build = try sandbox.multipack(["build", app, "-e", "A=build", "-e", "B=build", "-e", "C=build"])
        #expect(build.status == 0, "\(build.all)")
        let run = try sandbox.multipack(["run", app, "-e", "C=flag", "--", "sh", "-c", "echo $A $B $C; env"])
        #expect(run.stdout.hasPrefix("build dotenv flag\n"), "\(run.all)")
        #expect(!run.stdout.contains("MULTIPACK_"), "\(run.stdout)")
    }
}
