import Foundation
import Testing

@testable import MultipackKit

#if canImport(Glibc)
    import Glibc
#endif

/// SPEC §5: a cached git checkout changed on disk never runs, under a commit pin, under the lock
/// or for a floating ref. The hostile child is a real one: a later buildpack of the same build
/// that rewrites what it finds under CACHE_DIR/.multipack/git, as the red team's did.
@Suite struct GitCacheIntegrityTests {
    /// A pinned-able child whose compile says it is genuine, and an attacker listed after it.
    struct Setup {
        let temp: TempDir
        let mp: Multipack
        let app: App
        let repo: String
        let commit: String
        let environment: [String: String]

        /// `attack` is bash run by the second child's compile with `$ENTRY` the first child's cached
        /// checkout (empty when there is none).
        init(_ name: String, reference: (String, String) -> String, attack: String) throws {
            temp = try TempDir(name)
            repo = temp.path + "/remotes/genuine"
            try temp.write("remotes/genuine/bin/detect", "#!/usr/bin/env bash\necho Genuine\n", executable: true)
            try temp.write(
                "remotes/genuine/bin/compile", "#!/usr/bin/env bash\necho 'genuine compile ran'\n", executable: true)
            try temp.write("remotes/genuine/lib/helper.sh", "echo helper\n")
            try Shell.git(["init", "--quiet", "--initial-branch=main"], in: repo)
            try Shell.git(["add", "-A"], in: repo)
            try Shell.git(["commit", "--quiet", "-m", "genuine"], in: repo)
            commit = try Shell.gitOutput(["rev-parse", "HEAD"], in: repo)
            let attacker = try scriptedChild(
                "attacker", in: temp, detect: "echo Attacker",
                compile: """
                    for ENTRY in "$2"/.multipack/git/*/[0-9a-f]*[0-9a-f]; do
                      [ -d "$ENTRY" ] || continue
                      \(attack)
                    done
                    """)
            app = try App(nil, in: temp, buildpacks: reference("file://" + repo, commit) + "\n" + attacker + "\n")
            mp = try Multipack(in: temp)
            environment = ["TMPDIR": temp.sub("tmp")]
        }

        func compile(_ verb: String = "compile") throws -> Output {
            try mp.shim(verb, [app.build, app.cache, app.env], environment: environment)
        }

        func lock() throws -> Output {
            try Shell.run(Repo.binary, ["lock", app.build], environment: Multipack.environment(environment))
        }

        var entry: String { app.cache + "/.multipack/git/" + cacheKey("file://" + repo) + "/" + commit }
    }

    static let rewrite = #"printf '#!/usr/bin/env bash\necho PWNED\n' > "$ENTRY/bin/compile""#

    enum Pin: String, CaseIterable { case sha, lock, branch }

    @Test(arguments: Pin.allCases) func aCheckoutALaterChildRewroteIsFetchedAgainNeverRun(_ pin: Pin) throws {
        let setup = try Setup(
            "git-tamper-\(pin)", reference: { url, commit in pin == .sha ? "\(url)#\(commit)" : url },
            attack: Self.rewrite)
        if pin == .lock { #expect(try setup.lock().status == 0) }
        let first = try setup.compile()
        #expect(first.status == 0, "\(first.all)")
        #expect(try String(contentsOfFile: setup.entry + "/bin/compile", encoding: .utf8).contains("PWNED"))

        let second = try setup.compile()
        #expect(second.status == 0, "\(second.all)")
        #expect(!second.all.contains("PWNED"), "\(second.all)")
        #expect(second.stdout.contains("genuine compile ran"))
        #expect(
            second.stderr.contains(
                "The cached checkout of file://\(setup.repo) at \(setup.commit.prefix(12)) was changed on disk "
                    + "(bin/compile changed). It was not run: it was dropped and is fetched again."), "\(second.stderr)"
        )
        #expect(second.stdout.contains("@ \(setup.commit.prefix(12)) (cloned,"), "\(second.stdout)")
        if pin == .lock { #expect(second.stdout.contains("Using .buildpacks.lock (1 of 2 pinned")) }
    }

    @Test func anAddedTestCompileIsAChangeToo() throws {
        let setup = try Setup(
            "git-added", reference: { url, commit in "\(url)#\(commit)" },
            attack:
                #"printf '#!/usr/bin/env bash\necho PWNED\n' > "$ENTRY/bin/test-compile"; chmod +x "$ENTRY/bin/test-compile""#
        )
        #expect(try setup.compile().status == 0)
        let test = try setup.compile("test-compile")
        #expect(test.status == 0, "\(test.all)")
        #expect(!test.all.contains("PWNED"), "\(test.all)")
        #expect(test.stdout.contains("genuine compile ran"))
        #expect(test.stderr.contains("was changed on disk (bin/test-compile was added)"), "\(test.stderr)")
    }

    @Test func aModeOrALinkOrAFifoIsAChange() throws {
        let attacks = [
            (#"chmod -x "$ENTRY/bin/compile""#, "bin/compile lost its executable bit"),
            (#"chmod +x "$ENTRY/lib/helper.sh""#, "lib/helper.sh gained its executable bit"),
            (
                #"rm "$ENTRY/lib/helper.sh"; ln -s /etc/passwd "$ENTRY/lib/helper.sh""#,
                "lib/helper.sh is no longer a file"
            ),
            (#"rm "$ENTRY/lib/helper.sh"; mkfifo "$ENTRY/lib/helper.sh""#, "lib/helper.sh is no longer a file"),
            (#"rm -r "$ENTRY/lib""#, "lib is missing"),
            // A sparse giant is found without reading it, and a forged record of objects is no record.
            (#"truncate -s 100G "$ENTRY/lib/helper.sh""#, "lib/helper.sh changed"),
            (#"printf 'tree 0\0' > "$ENTRY.objects""#, "the record of the commit's objects is missing or damaged"),
            (#"rm "$ENTRY.objects"; mkfifo "$ENTRY.objects""#, ""),
        ]
        for (attack, change) in attacks {
            let setup = try Setup("git-kinds", reference: { url, commit in "\(url)#\(commit)" }, attack: attack)
            #expect(try setup.compile().status == 0)
            let start = Date()
            let second = try setup.compile()
            #expect(second.status == 0, "\(second.all)")
            #expect(Date().timeIntervalSince(start) < 20, "\(attack)")
            #expect(!second.all.contains("PWNED"))
            #expect(second.stdout.contains("@ \(setup.commit.prefix(12)) (cloned,"), "\(attack): \(second.stdout)")
            // A record of objects that is not a file is dropped without a word, as one that is missing.
            if !change.isEmpty {
                #expect(second.stderr.contains("was changed on disk (\(change))"), "\(attack): \(second.stderr)")
            }
        }
    }

    /// With the network gone (the repository removed), a changed checkout under the lock is
    /// refused: the build fails, and the changed code never runs.
    @Test func offlineUnderTheLockAChangedCheckoutIsRefused() throws {
        let setup = try Setup("git-offline", reference: { url, _ in url }, attack: Self.rewrite)
        #expect(try setup.lock().status == 0)
        #expect(try setup.compile().status == 0)
        try FileManager.default.removeItem(atPath: setup.repo)
        let offline = try setup.compile()
        #expect(offline.status == 1, "\(offline.all)")
        #expect(!offline.all.contains("PWNED"), "\(offline.all)")
        #expect(offline.stderr.contains("was changed on disk (bin/compile changed)"), "\(offline.stderr)")
        #expect(offline.stderr.contains("Failed to fetch buildpack [1/2]"), "\(offline.stderr)")
        #expect(!FileManager.default.fileExists(atPath: setup.entry))
    }

    /// A repository whose `.gitattributes` converts line endings checks out files that are not its
    /// blobs: it is used, with a warning, and never kept where it could not be verified.
    @Test func aCheckoutThatIsNotItsBlobsIsNotKept() throws {
        let temp = try TempDir("git-eol")
        let repo = try gitChild("node", in: temp)
        try "README text eol=crlf\n".write(toFile: repo + "/.gitattributes", atomically: true, encoding: .utf8)
        try "one\ntwo\n".write(toFile: repo + "/README", atomically: true, encoding: .utf8)
        try Shell.git(["add", "-A"], in: repo)
        try Shell.git(["commit", "--quiet", "-m", "crlf"], in: repo)
        let app = try App("python-node", in: temp, buildpacks: "file://\(repo)\n")
        let mp = try Multipack(in: temp)
        for _ in 0..<2 {
            let compile = try mp.shim("compile", [app.build, app.cache, app.env])
            #expect(compile.status == 0, "\(compile.all)")
            #expect(compile.stdout.contains("(cloned, not cached,"), "\(compile.stdout)")
            #expect(
                compile.stderr.contains("cannot be verified against its commit (README changed as git checked it out)"))
        }
        let entries = try FileManager.default.contentsOfDirectory(
            atPath: app.cache + "/.multipack/git/" + cacheKey("file://\(repo)"))
        #expect(entries.filter { $0 != "url" && !$0.hasPrefix("ref-") }.isEmpty, "\(entries)")
    }

    @Test func aChangeInsideASubmoduleIsFound() throws {
        let temp = try TempDir("git-submodule")
        let sub = temp.path + "/remotes/tool"
        try temp.write("remotes/tool/bin/tool", "#!/usr/bin/env bash\necho 'genuine tool'\n", executable: true)
        try Shell.git(["init", "--quiet", "--initial-branch=main"], in: sub)
        try Shell.git(["add", "-A"], in: sub)
        try Shell.git(["commit", "--quiet", "-m", "tool"], in: sub)
        let repo = try scriptedChild(
            "super", in: temp, detect: "echo Super", compile: #""$(dirname "$0")"/../vendor/tool/bin/tool"#)
        try Shell.git(["init", "--quiet", "--initial-branch=main"], in: repo)
        try Shell.git(
            ["-c", "protocol.file.allow=always", "submodule", "add", "--quiet", sub, "vendor/tool"], in: repo)
        try Shell.git(["add", "-A"], in: repo)
        try Shell.git(["commit", "--quiet", "-m", "super"], in: repo)
        let app = try App(nil, in: temp, buildpacks: "file://\(repo)\n")
        let mp = try Multipack(in: temp)
        let cold = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(cold.status == 0, "\(cold.all)")
        #expect(cold.stdout.contains("genuine tool"))
        let commit = try Shell.gitOutput(["rev-parse", "HEAD"], in: repo)
        let cached = app.cache + "/.multipack/git/" + cacheKey("file://\(repo)") + "/" + commit
        try "#!/usr/bin/env bash\necho PWNED\n".write(
            toFile: cached + "/vendor/tool/bin/tool", atomically: false, encoding: .utf8)
        let warm = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(warm.status == 0, "\(warm.all)")
        #expect(!warm.all.contains("PWNED"))
        #expect(warm.stderr.contains("was changed on disk (vendor/tool/bin/tool changed)"), "\(warm.stderr)")
    }
}

/// A git URL's password never shows in the argv of the git processes multipack starts (which
/// every user of the machine can read); git gets it through its environment instead.
@Suite struct GitCredentialTests {
    static let authorization = "Basic " + Data("deploy:s3cr3t-t0ken".utf8).base64EncodedString()

    /// A bare copy of the fixture served over git's dumb HTTP protocol, behind Basic auth.
    static func served(_ temp: TempDir) throws -> String {
        let repo = try gitChild("node", in: temp)
        let bare = temp.path + "/served/org/node.git"
        try Shell.git(["clone", "--quiet", "--bare", repo, bare], in: temp.path)
        try Shell.git(["update-server-info"], in: bare)
        return temp.path + "/served"
    }

    @Test func theCredentialsReachTheServerButNotTheArgv() throws {
        let temp = try TempDir("git-creds")
        let server = try LoopbackHTTPServer(
            routes: [:], mounts: ["/": try Self.served(temp)], authorization: Self.authorization)
        defer { server.stop() }
        let url = "http://deploy:s3cr3t-t0ken@127.0.0.1:\(server.port)/org/node.git"
        let app = try App("python-node", in: temp, buildpacks: url + "\n")
        let mp = try Multipack(in: temp)
        let compile = try mp.shim(
            "compile", [app.build, app.cache, app.env], environment: ["BUILDPACK_XTRACE": "1"])
        #expect(compile.status == 0, "\(compile.all)")
        #expect(compile.stdout.contains("node installed"))
        #expect(!compile.all.contains("s3cr3t"))
        #expect(
            server.requests("/org/node.git/info/refs").contains { $0.headers["authorization"] == Self.authorization })
    }

    /// The red team's repro: while a slow server holds `git ls-remote`, read every git process's
    /// /proc/PID/cmdline.
    @Test func aSlowServerShowsNoTokenInPs() throws {
        let temp = try TempDir("git-ps")
        let server = try LoopbackHTTPServer(routes: [
            "/org/node.git/info/refs": .stall(body: [UInt8](repeating: 0x30, count: 1000), after: 0)
        ])
        defer { server.stop() }
        let app = try App(
            nil, in: temp, buildpacks: "http://deploy:s3cr3t-t0ken@127.0.0.1:\(server.port)/org/node.git\n")
        let build = try BackgroundCompile(try Multipack(in: temp), app, temp: temp)
        var seen: [String] = []
        let deadline = Date().addingTimeInterval(20)
        while seen.isEmpty && Date() < deadline {
            for (_, words) in commandLines() where words.contains(where: { $0.contains("127.0.0.1:\(server.port)") }) {
                seen.append(words.joined(separator: " "))
            }
            usleep(20_000)
        }
        _ = build.stop(with: SIGTERM)
        #expect(!seen.isEmpty, "no git process was seen: \(build.output)")
        for line in seen { #expect(!line.contains("s3cr3t"), "\(line)") }
        #expect(seen.contains { $0.contains("http://127.0.0.1:\(server.port)/org/node.git") }, "\(seen)")
    }
}
