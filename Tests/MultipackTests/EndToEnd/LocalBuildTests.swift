import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `multipack build`, `run`, `ci` and `cache purge` through the real binary, with HOME,
/// XDG_CACHE_HOME and TMPDIR in a temp dir: the user's own cache is never touched.
struct LocalWorld {
    let temp: TempDir
    let environment: [String: String]
    var tmp: String { temp.path + "/tmp" }
    var cacheHome: String { temp.path + "/xdg" }

    init(_ name: String) throws {
        temp = try TempDir(name)
        // Root's builds without namespaces run as an id that owns nothing, which must pass
        // through to the state directory under it (not list it).
        chmod(temp.path, 0o711)
        var env = Multipack.environment([:])
        env["HOME"] = temp.sub("home")
        env["XDG_CACHE_HOME"] = temp.sub("xdg")
        env["TMPDIR"] = temp.sub("tmp")
        // This machine's own system, as a user gets with --stack-root /: builds that are not about
        // the stack stay offline and fast. StackBuildTests build on images, with this unset.
        env["MULTIPACK_STACK_ROOT"] = "/"
        environment = env
    }

    /// A fixture app copied into the temp dir; its `.buildpacks` names fixture children by path.
    func app(_ fixture: String = "python-node", buildpacks: [String]? = ["node", "python"], name: String = "app") throws
        -> String
    {
        let dir = temp.path + "/" + name
        try FileManager.default.copyItem(atPath: Repo.fixtures + "/apps/" + fixture, toPath: dir)
        if let buildpacks {
            let list = buildpacks.map { Repo.fixtures + "/buildpacks/" + $0 + "\n" }.joined()
            try list.write(toFile: dir + "/.buildpacks", atomically: true, encoding: .utf8)
        }
        return dir
    }

    func buildpack(_ name: String) -> String { Repo.fixtures + "/buildpacks/" + name }

    @discardableResult
    func multipack(_ arguments: [String], extra: [String: String] = [:]) throws -> Output {
        try Shell.run(Repo.binary, arguments, in: temp.path, environment: environment.merging(extra) { $1 })
    }

    /// `build --json`: the summary object and the log.
    func buildJSON(_ arguments: [String]) throws -> (json: [String: Any], output: Output) {
        let output = try multipack(["build"] + arguments + ["--json"])
        let object = try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any]
        return (try #require(object, "stdout is not a JSON object: \(output.stdout)"), output)
    }

    func slugMembers(_ slug: String) throws -> [String] {
        let listing = try Shell.run("tar", ["tzf", slug])
        #expect(listing.status == 0, "\(listing.all)")
        return listing.stdout.split(separator: "\n").map(String.init)
    }
}

/// A buildpack written for a test: detect passes; compile dumps its environment and ENV_DIR.
func dumpBuildpack(in temp: TempDir) throws -> String {
    try temp.write("dump/bin/detect", "#!/usr/bin/env bash\necho Dump\n", executable: true)
    try temp.write(
        "dump/bin/compile",
        """
        #!/usr/bin/env bash
        env | sort > "$1/env.txt"
        for f in "$3"/*; do [ -f "$f" ] && printf '%s=[%s]\\n' "${f##*/}" "$(cat "$f")"; done > "$1/config.txt"
        ls -A "$1" > "$1/files-at-compile.txt"
        echo "       dumped"

        """, executable: true)
    return temp.path + "/dump"
}

@Suite struct LocalBuildTests {
    @Test func buildWritesASlugOfAppWithTheProcessTypes() throws {
        let world = try LocalWorld("build")
        let app = try world.app()
        try Shell.git(["init", "--quiet", "--initial-branch=main"], in: app)
        try Shell.git(["add", "-A"], in: app)
        try Shell.git(["commit", "--quiet", "-m", "app"], in: app)
        try "web: node server.js\n".write(toFile: app + "/Procfile", atomically: true, encoding: .utf8)
        let slug = world.temp.path + "/out/my-slug.tgz"
        try FileManager.default.createDirectory(atPath: world.temp.path + "/out", withIntermediateDirectories: true)

        let build = try world.multipack(["build", app, "--slug", slug])
        #expect(build.status == 0, "\(build.all)")
        #expect(build.stdout.contains("=====> Discovering process types"))
        #expect(build.stdout.contains("Procfile declares types     -> web"))
        #expect(build.stdout.contains("Default types for buildpack -> assets, worker"))
        // The Procfile wins over the release's default.
        #expect(build.stdout.contains("       web: node server.js\n"))
        #expect(build.stdout.contains("       worker: python worker.py\n"))
        #expect(build.stdout.contains("Slug: \(slug) ("))
        let members = try world.slugMembers(slug)
        #expect(members.first == "./app/")
        #expect(members.allSatisfy { $0.hasPrefix("./app/") }, "\(members)")
        #expect(members.contains("./app/.heroku/node/bin/node"))
        #expect(members.contains("./app/Procfile"))
        #expect(!members.contains { $0.hasPrefix("./app/.git/") || $0 == "./app/.git" }, "the app's .git is not copied")
        // The release for `multipack run` sits next to the slug, not in it.
        #expect(FileManager.default.fileExists(atPath: slug + ".release.yml"))
        #expect(!members.contains { $0.contains("release.yml") })
        // report's output is kept.
        let reportLine = try #require(build.stdout.split(separator: "\n").first { $0.contains("Report: ") })
        let report = try String(contentsOfFile: String(reportLine.split(separator: " ").last!), encoding: .utf8)
        #expect(report.contains("outcome: \"succeeded\""))
        // Nothing of the build is left in the checkout's fixture.
        #expect(!FileManager.default.fileExists(atPath: Repo.fixtures + "/apps/python-node/post_compile.log"))
    }

    @Test func slugIgnoreMatchesAreDeletedBeforeCompile() throws {
        let world = try LocalWorld("slugignore")
        let app = try world.app(buildpacks: nil)
        let files = [
            "a.log", "sub/deep/b.log", "docs/x.md", "docs/y.txt", "sub/docs/x.md", "spec/a_spec.rb",
            "lib/spec/b_spec.rb", "notes/spec", "tmp/cache/c.bin", "tmp/keep", "keep.txt", "data/v?.csv", "data/v1.csv",
        ]
        for file in files { try world.temp.write("app/" + file, "x\n") }
        try world.temp.write(
            "app/.slugignore",
            """
            # logs anywhere (unanchored)
            *.log

            /docs/*.md
            spec/
            tmp/cache
            #keep.txt
            data/v?.csv

            """)
        let dump = try dumpBuildpack(in: world.temp)
        let (json, output) = try world.buildJSON([app, "--buildpack", dump])
        #expect(output.status == 0, "\(output.all)")
        #expect(output.stderr.contains("Deleting 8 files matching .slugignore patterns."), "\(output.stderr)")
        let members = Set(try world.slugMembers(try #require((json["slug"] as? [String: Any])?["path"] as? String)))
        for gone in [
            "a.log", "sub/deep/b.log", "docs/x.md", "spec/", "lib/spec/", "tmp/cache/", "data/v1.csv", "data/v?.csv",
        ] {
            #expect(!members.contains("./app/" + gone), "\(gone) should be ignored")
        }
        #expect(!members.contains { $0.hasPrefix("./app/spec/") || $0.hasPrefix("./app/lib/spec/") })
        for kept in ["docs/y.txt", "sub/docs/x.md", "notes/spec", "tmp/keep", "keep.txt", ".slugignore", "lib/"] {
            #expect(members.contains("./app/" + kept), "\(kept) should be kept")
        }
        // Deleted before compile: the buildpack never saw them.
        let buildDir = try #require(json["build_directory"] as? String)
        let seen = try String(contentsOfFile: buildDir + "/files-at-compile.txt", encoding: .utf8)
        #expect(!seen.contains("a.log") && seen.contains("keep.txt"))
    }

    @Test func configVarsFromEnvFileAndEnvAndTheScrubbedEnvironment() throws {
        let world = try LocalWorld("envfile")
        let app = try world.app(buildpacks: nil)
        try Shell.git(["init", "--quiet", "--initial-branch=main"], in: app)
        try Shell.git(["add", "-A"], in: app)
        try Shell.git(["commit", "--quiet", "-m", "app"], in: app)
        let commit = try Shell.gitOutput(["rev-parse", "HEAD"], in: app)
        try world.temp.write(
            "config.env",
            """
            # comment
            \u{20}
            export PLAIN=one
            SINGLE='two words # not a comment'
            DOUBLE="line\\nnext \\"quoted\\""
            BARE=value # a comment
            EMPTY=
            OVERRIDDEN=from-file

            """)
        let dump = try dumpBuildpack(in: world.temp)
        let (json, output) = try world.buildJSON([
            app, "--buildpack", dump, "--env-file", "config.env", "--env", "OVERRIDDEN=from-flag", "--stack",
            "heroku-22",
        ])
        #expect(output.status == 0, "\(output.all)")
        let buildDir = try #require(json["build_directory"] as? String)
        let config = try String(contentsOfFile: buildDir + "/config.txt", encoding: .utf8)
        #expect(config.contains("PLAIN=[one]\n"))
        #expect(config.contains("SINGLE=[two words # not a comment]\n"))
        #expect(config.contains("DOUBLE=[line\nnext \"quoted\"]\n"))
        #expect(config.contains("BARE=[value]\n"))
        #expect(config.contains("EMPTY=[]\n"))
        #expect(config.contains("OVERRIDDEN=[from-flag]\n"))

        let env = try String(contentsOfFile: buildDir + "/env.txt", encoding: .utf8)
        let names = Set(env.split(separator: "\n").compactMap { $0.split(separator: "=").first.map(String.init) })
        #expect(env.contains("STACK=heroku-22\n"))
        #expect(env.contains("SOURCE_VERSION=\(commit)\n"))
        #expect(
            names.contains("REQUEST_ID") && names.contains("HOME") && names.contains("PATH") && names.contains("LANG"))
        // Nothing else from the shell multipack was started from (bash adds PWD, SHLVL, _).
        let allowed: Set<String> = [
            "HOME", "LANG", "PATH", "STACK", "SOURCE_VERSION", "REQUEST_ID", "TMPDIR", "PWD", "SHLVL", "_", "OLDPWD",
        ]
        #expect(names.subtracting(allowed).isEmpty, "unexpected: \(names.subtracting(allowed))")
        #expect(json["source_version"] as? String == commit)
    }

    @Test func aBadEnvFileLineIsAUsageErrorWithItsNumber() throws {
        let world = try LocalWorld("envfile-bad")
        let app = try world.app(buildpacks: nil)
        try world.temp.write("bad.env", "GOOD=1\n# fine\nthis line is wrong\n")
        let build = try world.multipack([
            "build", app, "--buildpack", world.buildpack("env-probe"), "--env-file", "bad.env",
        ])
        #expect(build.status == 2)
        #expect(build.stderr.contains(" !     bad.env line 3 is not a dotenv line: there is no `=`"), "\(build.stderr)")
        try world.temp.write("quote.env", "A='open\n")
        let quote = try world.multipack([
            "build", app, "--buildpack", world.buildpack("env-probe"), "--env-file", "quote.env",
        ])
        #expect(quote.status == 2)
        #expect(quote.stderr.contains("quote.env line 1 is not a dotenv line: the single quote is never closed"))
        let flag = try world.multipack(["build", app, "--buildpack", world.buildpack("env-probe"), "--env", "1X=2"])
        #expect(flag.status == 2)
        #expect(flag.stderr.contains("--env takes NAME=VALUE"))
        // No build directory was made for a build that could not start.
        #expect(try FileManager.default.contentsOfDirectory(atPath: world.tmp).isEmpty)
    }

    @Test func buildpackListRunsEachAsATopLevelBuildpack() throws {
        let world = try LocalWorld("list")
        let app = try world.app(buildpacks: nil)
        let node = try gitChild("node", in: world.temp)
        let (json, output) = try world.buildJSON([
            app, "--buildpack", "file://" + node, "--buildpack", world.buildpack("python"),
        ])
        #expect(output.status == 0, "\(output.all)")
        // The node child's export reached the python child.
        #expect(output.stderr.contains("found v20.0.0-fixture at "))
        // The last release wins, as on Heroku: no `assets` from the node child.
        let types = try #require(json["process_types"] as? [String: String])
        #expect(types == ["web": "gunicorn app:app", "worker": "python worker.py"])
        let children = try #require(json["children"] as? [[String: Any]])
        #expect(children.map { $0["name"] as? String } == ["Node.js (fixture)", "Python (fixture)"])
        #expect(children.first?["version"] as? String == (try Shell.gitOutput(["rev-parse", "HEAD"], in: node)))
        // Without multipack in the list, the hooks are the children's: the Python child ran them.
        #expect(output.stderr.contains("running bin/post_compile"))

        let failing = try world.multipack([
            "build", app, "--buildpack", world.buildpack("fail-detect"), "--buildpack", world.buildpack("python"),
        ])
        #expect(failing.status == 1)
        #expect(failing.stderr.contains(" !     App not compatible with buildpack: \(world.buildpack("fail-detect"))"))
        #expect(failing.stderr.contains("this app has no Gemfile"))
        #expect(!failing.stdout.contains("Installing python"))

        let bad = try world.multipack(["build", app, "--buildpack", "https://user:tok@example.com/x y"])
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("--buildpack `https://***@example.com/x y`"), "\(bad.stderr)")
        #expect(!bad.all.contains("tok"))
    }

    @Test func aSecondBuildReusesTheCacheAndPurgeEmptiesIt() throws {
        let world = try LocalWorld("cache")
        let app = try world.app()
        let first = try world.multipack(["build", app])
        #expect(first.status == 0, "\(first.all)")
        #expect(first.stdout.contains("this is build 1 with this cache"))
        #expect(first.stdout.contains("=====> Using the cache in \(world.cacheHome)/multipack/apps/app-"))
        let second = try world.multipack(["build", app])
        #expect(second.stdout.contains("this is build 2 with this cache"), "\(second.all)")

        let throwaway = try world.multipack(["build", app, "--no-cache"])
        #expect(throwaway.stdout.contains("Using a throwaway cache (--no-cache)"))
        #expect(throwaway.stdout.contains("this is build 1 with this cache"))
        let own = world.temp.sub("own-cache")
        let explicit = try world.multipack(["build", app, "--cache", own])
        #expect(explicit.stdout.contains("Using the cache in \(own) (--cache)"))
        #expect(explicit.stdout.contains("this is build 1 with this cache"))

        let purge = try world.multipack(["cache", "purge", app])
        #expect(purge.status == 0, "\(purge.all)")
        #expect(purge.stdout.contains("Purged the cache of \(app)"))
        let third = try world.multipack(["build", app])
        #expect(third.stdout.contains("this is build 1 with this cache"))
        let all = try world.multipack(["cache", "purge"])
        #expect(all.status == 0 && all.stdout.contains("Purged every app's cache"))
        #expect(!FileManager.default.fileExists(atPath: world.cacheHome + "/multipack/apps"))
    }

    @Test func jsonIsOneObjectThatMatchesTheLog() throws {
        let world = try LocalWorld("json")
        let app = try world.app()
        let (json, output) = try world.buildJSON([app])
        #expect(output.status == 0, "\(output.all)")
        #expect(json["outcome"] as? String == "succeeded")
        #expect(json["exit_code"] as? Int == 0)
        let log = output.stderr
        let slug = try #require(json["slug"] as? [String: Any])
        let path = try #require(slug["path"] as? String)
        let bytes = try #require(slug["bytes"] as? Int)
        #expect(log.contains("Slug: \(path) (\(bytes) bytes;"))
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int == bytes)
        let types = try #require(json["process_types"] as? [String: String])
        #expect(types.count == 3)
        for (name, command) in types { #expect(log.contains("       \(name): \(command)\n")) }
        let children = try #require(json["children"] as? [[String: Any]])
        #expect(children.count == 2)
        for child in children {
            let name = try #require(child["name"] as? String)
            #expect(log.contains("Detected: \(name)"))
            #expect((child["compile_seconds"] as? Double ?? 0) > 0)
        }
        #expect(log.contains("=====> Build directory: \(json["build_directory"] as? String ?? "?")"))

        let failed = try world.buildJSON([app, "--buildpack", world.buildpack("fail-compile")])
        #expect(failed.output.status == 1)
        #expect(failed.json["outcome"] as? String == "failed")
        #expect((failed.json["failure"] as? String)?.contains("failed during compile") == true)
        #expect(failed.json["slug"] == nil)
    }

    @Test func aSlugAboveTheLimitFailsTheBuild() throws {
        let world = try LocalWorld("limit")
        let app = try world.app()
        let build = try world.multipack(["build", app, "--slug-limit", "0"])
        #expect(build.status == 1)
        #expect(build.stderr.contains(" !     Compiled slug size: "))
        #expect(build.stderr.contains("is too large (max is 0M)."))
        #expect(build.stderr.contains(".slugignore"))
    }
}

@Suite struct LocalRunTests {
    @Test func runStartsTheWebProcessOnALoopbackPort() throws {
        let world = try LocalWorld("run")
        let app = try world.app()
        // The web process proves .profile.d (node on PATH) and .profile ran first.
        try "web: echo \"$PATH\" > path.txt; echo \"$GREETING $DYNO $MY_VAR\" > greeting.txt; node server.js\n"
            .write(toFile: app + "/Procfile", atomically: true, encoding: .utf8)
        try "export GREETING=hello-from-profile\n".write(toFile: app + "/.profile", atomically: true, encoding: .utf8)
        try "<h1>python-node fixture</h1>\n".write(toFile: app + "/index.html", atomically: true, encoding: .utf8)
        let slug = world.temp.path + "/app.slug.tgz"
        let build = try world.multipack(["build", app, "--slug", slug])
        #expect(build.status == 0, "\(build.all)")

        let port = try freeLoopbackPort()
        var env = world.environment
        env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
        let log = world.temp.path + "/run.log"
        let process = try Repo.start(
            ["run", slug, "web", "--port", String(port), "--env", "MY_VAR=set"], environment: env, log: log)
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }

        var page: (status: Int, body: String)?
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline && process.isRunning {
            page = httpGet(port: port, path: "/")
            if page != nil { break }
            usleep(50_000)
        }
        let output = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        let index = try #require(page, "no answer on 127.0.0.1:\(port): \(output())")
        #expect(index.status == 200)
        #expect(index.body.contains("<h1>python-node fixture</h1>"))
        let greeting = httpGet(port: port, path: "/greeting.txt")
        #expect(greeting?.body == "hello-from-profile web.1 set\n")
        let path = try #require(httpGet(port: port, path: "/path.txt")).body
        // The slug is at /app, as on a dyno.
        #expect(path.hasPrefix("/app/.heroku/"), "\(path)")
        #expect(path.contains("/app/.heroku/node/bin"), "\(path)")

        kill(process.processIdentifier, SIGTERM)
        let sent = Date()
        while process.isRunning && Date().timeIntervalSince(sent) < 10 { usleep(20_000) }
        #expect(!process.isRunning, "multipack run did not stop on SIGTERM")
        process.waitUntilExit()
        #expect(process.terminationStatus != 0)
        usleep(100_000)
        #expect(httpGet(port: port, path: "/") == nil, "the web process outlived multipack run")
        #expect(output().contains("=====> Starting web: echo"))
        // The extracted slug is gone.
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: world.tmp).filter { $0.hasPrefix("multipack-run-") }
                .isEmpty)
    }

    @Test func runUsesABuildDirectoryOrTheAppsLastBuildAndReturnsTheExitCode() throws {
        let world = try LocalWorld("run-dir")
        let app = try world.app()
        try "web: node server.js\nfails: exit 7\nnode: node --version\n".write(
            toFile: app + "/Procfile", atomically: true, encoding: .utf8)
        let (json, output) = try world.buildJSON([app])
        #expect(output.status == 0, "\(output.all)")
        let buildDir = try #require(json["build_directory"] as? String)
        let node = try world.multipack(["run", buildDir, "node"])
        #expect(node.status == 0, "\(node.all)")
        #expect(node.stdout == "v20.0.0-fixture\n")
        #expect(node.stderr.contains("HOME=/app PORT=5000 DYNO=node.1"))
        let fails = try world.multipack(["run", app, "fails"])
        #expect(fails.status == 7)
        #expect(fails.stderr.contains("Using the last build of \(app): build_"))
        #expect(fails.stderr.contains(" in \(buildDir)\n"))
        let unknown = try world.multipack(["run", buildDir, "nope"])
        #expect(unknown.status == 2)
        #expect(unknown.stderr.contains("There is no process type `nope`"))
        #expect(unknown.stderr.contains("It has: web, assets, worker, fails, node."))
    }
}

@Suite struct LocalCITests {
    @Test func ciRunsTestCompileThenTheTests() throws {
        let world = try LocalWorld("ci")
        let app = try world.app(buildpacks: ["node", "tester"])
        let ci = try world.multipack(["ci", app])
        #expect(ci.status == 0, "\(ci.all)")
        #expect(ci.stdout.contains("test-compile ran"))
        #expect(ci.stdout.contains("Running tests (fixture), TESTER_READY=yes"))
        #expect(ci.stdout.contains("CI=true"))
        #expect(ci.stdout.contains("all passed"))
        #expect(!ci.stdout.contains("Compressing"))

        let list = try world.multipack(["ci", app, "--buildpack", world.buildpack("tester")])
        #expect(list.status == 0, "\(list.all)")
        #expect(list.stdout.contains("all passed"))
    }

    @Test func failingTestsFailTheCIRun() throws {
        let world = try LocalWorld("ci-fail")
        let app = try world.app(buildpacks: ["tester"])
        try "".write(toFile: app + "/tests-fail", atomically: true, encoding: .utf8)
        let ci = try world.multipack(["ci", app])
        #expect(ci.status == 1)
        #expect(ci.stdout.contains("1 failed"))
        #expect(ci.stderr.contains("Tests failed: buildpack [1/1] Tester (fixture)'s bin/test ended with exit code 1"))
        let list = try world.multipack(["ci", app, "--buildpack", world.buildpack("tester"), "--json"])
        #expect(list.status == 1)
        #expect(
            list.stderr.contains("Tests failed: buildpack [1/1] Tester (fixture)'s bin/test ended with exit code 1"))
        #expect(list.stdout.contains("\"outcome\" : \"failed\""))
    }
}

/// A port nobody listens on right now.
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
            bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
        }
    }
    guard bound else { throw TestFailure("could not bind a loopback port") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// GET over a plain socket to 127.0.0.1 (HTTP/1.0, so the server closes when done).
func httpGet(port: Int, path: String) -> (status: Int, body: String)? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var timeout = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
    guard connected else { return nil }
    let request = Array("GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".utf8)
    guard send(fd, request, request.count, 0) == request.count else { return nil }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n <= 0 { break }
        response += buffer[0..<n]
    }
    let text = String(decoding: response, as: UTF8.self)
    guard let headEnd = text.range(of: "\r\n\r\n"), let statusText = text.split(separator: " ").dropFirst().first,
        let status = Int(statusText)
    else { return nil }
    return (status, String(text[headEnd.upperBound...]))
}
