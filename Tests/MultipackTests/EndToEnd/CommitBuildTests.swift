import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// An app's repository (the "upstream") and its bare copy, served over `file://` and over
/// loopback dumb HTTP, built with `multipack build GIT_URL#REF --slug-dir` (SPEC §19).
struct RepositoryWorld {
    let world: LocalWorld
    let upstream: String
    let bare: String
    let probe: String
    let slugs: String
    var temp: TempDir { world.temp }

    enum Transport: String, CaseIterable, CustomTestStringConvertible {
        case file, http
        var testDescription: String { rawValue }
    }

    init(_ name: String) throws {
        world = try LocalWorld(name)
        upstream = world.temp.path + "/upstream/shop"
        bare = world.temp.path + "/served/shop.git"
        slugs = world.temp.path + "/slugs"
        // The child: says it compiled, keeps SOURCE_VERSION and the app's VERSION in the slug,
        // and sleeps PROBE_SLEEP seconds (a config var) so that two builds overlap.
        try world.temp.write("probe/bin/detect", "#!/usr/bin/env bash\necho Probe\n", executable: true)
        try world.temp.write(
            "probe/bin/compile",
            """
            #!/usr/bin/env bash
            echo "       probe compiled SOURCE_VERSION=$SOURCE_VERSION"
            echo "$SOURCE_VERSION" > "$1/source_version.txt"
            [ -f "$3/PROBE_SLEEP" ] && sleep "$(cat "$3/PROBE_SLEEP")"
            exit 0

            """, executable: true)
        probe = world.temp.path + "/probe"
        try FileManager.default.createDirectory(atPath: upstream, withIntermediateDirectories: true)
        try world.temp.write("upstream/shop/Procfile", "web: cat VERSION source_version.txt\n")
        try world.temp.write("upstream/shop/VERSION", "1\n")
        try Shell.git(["init", "--quiet", "--initial-branch=main"], in: upstream)
        try Shell.git(["add", "-A"], in: upstream)
        try Shell.git(["commit", "--quiet", "-m", "one"], in: upstream)
        try Shell.git(["tag", "v1"], in: upstream)
        try Shell.git(["clone", "--quiet", "--bare", upstream, bare], in: world.temp.path)
        try Shell.git(["update-server-info"], in: bare)
    }

    /// A new commit on `branch` of upstream, pushed to the served copy; returns it.
    @discardableResult
    func commit(version: String, on branch: String = "main") throws -> String {
        let branches = try Shell.gitOutput(["branch", "--list", branch], in: upstream)
        try Shell.git(["checkout", "--quiet"] + (branches.isEmpty ? ["-b", branch] : [branch]), in: upstream)
        try (version + "\n").write(toFile: upstream + "/VERSION", atomically: true, encoding: .utf8)
        try Shell.git(["commit", "--quiet", "-am", "version \(version)"], in: upstream)
        try Shell.git(["push", "--quiet", "--force", "--tags", bare, branch], in: upstream)
        try Shell.git(["update-server-info"], in: bare)
        return try head()
    }

    func head() throws -> String { try Shell.gitOutput(["rev-parse", "HEAD"], in: upstream) }

    func build(_ url: String, _ extra: [String] = []) throws -> Output {
        try world.multipack(["build", url, "--buildpack", probe, "--slug-dir", slugs] + extra)
    }

    func slug(_ commit: String) -> String { "\(slugs)/shop/\(commit).tar.gz" }

    /// A file of the app inside a slug.
    func file(_ name: String, in slug: String) throws -> String {
        let result = try Shell.run("tar", ["-xzOf", slug, "./app/" + name])
        #expect(result.status == 0, "\(result.all)")
        return result.stdout
    }
}

@Suite struct CommitBuildTests {
    /// A tag, a branch and a short commit, over file:// and dumb HTTP: the slug is named by the
    /// full commit and the child saw it as SOURCE_VERSION.
    @Test(arguments: RepositoryWorld.Transport.allCases)
    func refsResolveToTheFullCommit(_ transport: RepositoryWorld.Transport) throws {
        let repo = try RepositoryWorld("commit-\(transport.rawValue)")
        let tagged = try repo.head()
        let feature = try repo.commit(version: "2", on: "feature")
        let third = try repo.commit(version: "3", on: "main")
        var server: LoopbackHTTPServer?
        defer { server?.stop() }
        let base: String
        switch transport {
        case .file: base = "file://" + repo.bare
        case .http:
            server = try LoopbackHTTPServer(routes: [:], mounts: ["/": repo.temp.path + "/served"])
            base = server!.url("/shop.git")
        }
        for (ref, commit, version) in [
            ("v1", tagged, "1"), ("feature", feature, "2"), (String(third.prefix(7)), third, "3"),
        ] {
            let output = try repo.build(base + "#" + ref)
            #expect(output.status == 0, "\(ref): \(output.all)")
            #expect(output.stdout.contains("probe compiled SOURCE_VERSION=\(commit)"), "\(output.stdout)")
            let slug = repo.slug(commit)
            #expect(try repo.file("source_version.txt", in: slug) == commit + "\n")
            #expect(try repo.file("VERSION", in: slug) == version + "\n")
            let members = try repo.world.slugMembers(slug)
            #expect(!members.contains { $0.contains("/.git") }, "no .git in the slug: \(members)")
            let record =
                try JSONSerialization.jsonObject(
                    with: Data(contentsOf: URL(fileURLWithPath: "\(repo.slugs)/shop/\(commit).json"))) as? [String: Any]
            #expect(record?["commit"] as? String == commit)
            #expect(record?["ref"] as? String == ref)
            #expect(FileManager.default.fileExists(atPath: "\(repo.slugs)/shop/\(commit).release.yml"))
        }
        // The default branch without a ref.
        let output = try repo.build(base)
        #expect(output.status == 0, "\(output.all)")
        #expect(output.stdout.contains("Not built again"), "main is \(third), built above: \(output.stdout)")
    }

    @Test func aCommitFiledWithTheSameInputsIsNotBuiltAgain() throws {
        let repo = try RepositoryWorld("commit-again")
        let url = "file://" + repo.bare
        let first = try repo.head()
        #expect(try repo.build(url).status == 0)
        let slug = repo.slug(first)
        let before = try FileManager.default.attributesOfItem(atPath: slug)[.systemFileNumber] as? Int

        let again = try repo.build(url + "#main")
        #expect(again.status == 0, "\(again.all)")
        #expect(!again.stdout.contains("probe compiled"), "no buildpack ran: \(again.stdout)")
        #expect(again.stdout.contains("Not built again: \(slug) was built from this commit with the same inputs"))
        #expect(try FileManager.default.attributesOfItem(atPath: slug)[.systemFileNumber] as? Int == before)

        // --force builds it; other inputs (a config var) build it too, and say what changed.
        let forced = try repo.build(url, ["--force"])
        #expect(forced.status == 0 && forced.stdout.contains("probe compiled"), "\(forced.all)")
        let changed = try repo.build(url, ["-e", "FEATURE=on"])
        #expect(changed.status == 0 && changed.stdout.contains("probe compiled"), "\(changed.all)")
        #expect(changed.stdout.contains("the config vars: (none) → FEATURE"), "\(changed.stdout)")

        // A new commit gets its own slug; the first one stays.
        let second = try repo.commit(version: "2")
        let next = try repo.build(url)
        #expect(next.status == 0, "\(next.all)")
        #expect(try repo.file("source_version.txt", in: repo.slug(second)) == second + "\n")
        #expect(try repo.file("source_version.txt", in: slug) == first + "\n")
        // `run` takes a filed slug, with its release beside it.
        let run = try repo.world.multipack(["run", repo.slug(second), "web"])
        #expect(run.status == 0, "\(run.all)")
        #expect(run.stdout == "2\n\(second)\n", "\(run.all)")
    }

    @Test func twoCommitsBuiltAtOnceDoNotMix() throws {
        let repo = try RepositoryWorld("commit-concurrent")
        let url = "file://" + repo.bare
        let first = try repo.head()
        let second = try repo.commit(version: "2")
        let logs = [repo.temp.path + "/one.log", repo.temp.path + "/two.log"]
        let processes = try zip([first, second], logs).map { commit, log in
            try Repo.start(
                [
                    "build", url + "#" + commit, "--buildpack", repo.probe, "--slug-dir", repo.slugs, "-e",
                    "PROBE_SLEEP=2",
                ],
                environment: repo.world.environment, log: log)
        }
        for process in processes { process.waitUntilExit() }
        for (index, process) in processes.enumerated() {
            let log = (try? String(contentsOfFile: logs[index], encoding: .utf8)) ?? ""
            #expect(process.terminationStatus == 0, "\(log)")
        }
        #expect(try repo.file("source_version.txt", in: repo.slug(first)) == first + "\n")
        #expect(try repo.file("VERSION", in: repo.slug(first)) == "1\n")
        #expect(try repo.file("source_version.txt", in: repo.slug(second)) == second + "\n")
        #expect(try repo.file("VERSION", in: repo.slug(second)) == "2\n")
        // Both really ran at once: the second to start found the shared cache taken, or both
        // ran their 2 s sleeps side by side.
        let both = logs.compactMap { try? String(contentsOfFile: $0, encoding: .utf8) }.joined()
        #expect(both.components(separatedBy: "probe compiled").count == 3, "\(both)")
    }

    /// With the remote out of reach, a ref the mirror knows is built as the mirror last saw it,
    /// with a warning; one it does not know fails, saying why.
    @Test func anUnreachableRemoteFallsBackToTheMirror() throws {
        let repo = try RepositoryWorld("commit-offline")
        let server = try LoopbackHTTPServer(routes: [:], mounts: ["/": repo.temp.path + "/served"])
        let url = server.url("/shop.git")
        #expect(try repo.build(url + "#main").status == 0)
        server.stop()
        let offline = try repo.build(url + "#main")
        #expect(offline.status == 0, "\(offline.all)")
        #expect(offline.stderr.contains("Building main as the mirror last saw it: \(try repo.head().prefix(12))"))
        let unknown = try repo.build(url + "#v9")
        #expect(unknown.status == 1, "\(unknown.all)")
        #expect(unknown.stderr.contains("Could not fetch the app from \(url)"), "\(unknown.stderr)")
    }

    /// A commit that no branch or tag reaches (a pull request's) is asked for by its name.
    @Test func aCommitOnNoBranchIsFetchedByItsName() throws {
        let repo = try RepositoryWorld("commit-pull")
        let pull = try repo.commit(version: "pr", on: "pull-1")
        try Shell.git(["update-ref", "refs/pull/1/head", pull], in: repo.bare)
        try Shell.git(["branch", "--quiet", "-D", "pull-1"], in: repo.bare)
        let output = try repo.build("file://" + repo.bare + "#" + pull)
        #expect(output.status == 0, "\(output.all)")
        #expect(try repo.file("VERSION", in: repo.slug(pull)) == "pr\n")
    }

    /// The same commit twice at once: the second waits for the first, then finds its slug.
    @Test func oneCommitBuiltTwiceAtOnceIsBuiltOnce() throws {
        let repo = try RepositoryWorld("commit-twice")
        let url = "file://" + repo.bare
        let logs = [repo.temp.path + "/one.log", repo.temp.path + "/two.log"]
        let processes = try logs.map { log in
            try Repo.start(
                ["build", url, "--buildpack", repo.probe, "--slug-dir", repo.slugs, "-e", "PROBE_SLEEP=1"],
                environment: repo.world.environment, log: log)
        }
        for process in processes { process.waitUntilExit() }
        let texts = logs.map { (try? String(contentsOfFile: $0, encoding: .utf8)) ?? "" }
        for (process, text) in zip(processes, texts) { #expect(process.terminationStatus == 0, "\(text)") }
        #expect(texts.filter { $0.contains("probe compiled") }.count == 1, "\(texts)")
        #expect(texts.filter { $0.contains("Not built again") }.count == 1, "\(texts)")
        #expect(try repo.file("source_version.txt", in: repo.slug(try repo.head())) == (try repo.head()) + "\n")
    }

    @Test func aRefThatDoesNotResolveIsABuildFailureNamingItAndTheMaskedURL() throws {
        let repo = try RepositoryWorld("commit-noref")
        let server = try LoopbackHTTPServer(routes: [:], mounts: ["/": repo.temp.path + "/served"])
        defer { server.stop() }
        let url = server.url("/shop.git").replacing("http://", with: "http://deploy:s3cret@")
        for ref in ["no-such-branch", "deadbeef", "main~1"] {
            let output = try repo.build(url + "#" + ref)
            #expect(output.status == 1, "\(ref): \(output.all)")
            #expect(
                output.stderr.contains(
                    "There is no branch, tag or commit `\(ref)` in http://***@127.0.0.1:\(server.port)/shop.git"),
                "\(output.stderr)")
            #expect(!output.all.contains("s3cret"))
        }
        #expect(!FileManager.default.fileExists(atPath: repo.slugs), "nothing filed")
    }

    /// The user and password of an http URL reach git through its environment: never its argv
    /// (a `git` on PATH records every argv), the log, the mirror or the app's state.
    @Test func credentialsInTheAppsURLAreNeverInTheLogOrArgv() throws {
        let repo = try RepositoryWorld("commit-credentials")
        let server = try LoopbackHTTPServer(
            routes: [:], mounts: ["/": repo.temp.path + "/served"],
            authorization: "Basic " + Data("deploy:s3cret".utf8).base64EncodedString())
        defer { server.stop() }
        let realGit = try Shell.run("sh", ["-c", "command -v git"]).stdout.trimmingCharacters(
            in: .whitespacesAndNewlines)
        let argvLog = repo.temp.path + "/argv.log"
        try repo.temp.write(
            "shims/git", "#!/bin/sh\nprintf '%s\\n' \"$*\" >> \(argvLog)\nexec \(realGit) \"$@\"\n", executable: true)
        let path = repo.temp.path + "/shims:" + (repo.world.environment["PATH"] ?? "/usr/bin:/bin")
        let url = server.url("/shop.git").replacing("http://", with: "http://deploy:s3cret@")
        let output = try repo.world.multipack(
            ["build", url + "#v1", "--buildpack", repo.probe, "--slug-dir", repo.slugs], extra: ["PATH": path])
        #expect(output.status == 0, "\(output.all)")
        #expect(output.all.contains("http://***@127.0.0.1:\(server.port)/shop.git"), "\(output.all)")
        #expect(!output.all.contains("s3cret"))
        let argv = try String(contentsOfFile: argvLog, encoding: .utf8)
        #expect(argv.contains("fetch"), "git was run through the shim: \(argv)")
        #expect(!argv.contains("s3cret") && !argv.contains("deploy@"), "\(argv)")
        let stored = try Shell.run("grep", ["-rl", "s3cret", repo.world.cacheHome, repo.slugs])
        #expect(stored.stdout.isEmpty, "credentials stored in \(stored.stdout)")
        // git asks without credentials first, then with those the helper gives it.
        #expect(server.requests("/shop.git/info/refs").contains { $0.headers["authorization"] != nil })
    }

    /// A local app directory in a git work tree: its slug is named by HEAD's commit, `-dirty`
    /// when the work tree has changes, and a dirty build is always built.
    @Test func aLocalCheckoutIsNamedByHeadAndDirtyWhenChanged() throws {
        let repo = try RepositoryWorld("commit-local")
        let commit = try repo.head()
        let clean = try repo.build(repo.upstream)
        #expect(clean.status == 0, "\(clean.all)")
        #expect(try repo.file("source_version.txt", in: repo.slug(commit)) == commit + "\n")
        #expect(try repo.build(repo.upstream).stdout.contains("Not built again"))

        try repo.temp.write("upstream/shop/new-file", "untracked\n")
        for _ in 0..<2 {
            let dirty = try repo.build(repo.upstream)
            #expect(dirty.status == 0 && dirty.stdout.contains("probe compiled"), "\(dirty.all)")
            #expect(try repo.file("new-file", in: repo.slug(commit + "-dirty")) == "untracked\n")
        }
        let notGit = try repo.world.app("plain", buildpacks: nil, name: "plain")
        let refused = try repo.world.multipack(["build", notGit, "--slug-dir", repo.slugs])
        #expect(refused.status == 2, "\(refused.all)")
        #expect(refused.stderr.contains("--slug-dir names slugs by commit, and \(notGit) is not in a git work tree"))
    }

    /// A submodule whose URL is relative to the app's repository is found beside it, as git
    /// finds it when it clones the app; its files are in the slug, its `.git` is not.
    @Test func submodulesAreInitialisedFromTheAppsOwnURL() throws {
        let repo = try RepositoryWorld("commit-submodule")
        let lib = repo.temp.path + "/upstream/lib"
        try FileManager.default.createDirectory(atPath: lib, withIntermediateDirectories: true)
        try repo.temp.write("upstream/lib/lib.txt", "from the submodule\n")
        try Shell.git(["init", "--quiet", "--initial-branch=main"], in: lib)
        try Shell.git(["add", "-A"], in: lib)
        try Shell.git(["commit", "--quiet", "-m", "lib"], in: lib)
        try Shell.git(["clone", "--quiet", "--bare", lib, repo.temp.path + "/served/lib.git"], in: repo.temp.path)
        try Shell.git(
            ["-c", "protocol.file.allow=always", "submodule", "add", "--quiet", lib, "lib"], in: repo.upstream)
        try Shell.git(["config", "-f", ".gitmodules", "submodule.lib.url", "../lib.git"], in: repo.upstream)
        try Shell.git(["commit", "--quiet", "-am", "lib"], in: repo.upstream)
        try Shell.git(["push", "--quiet", repo.bare, "main"], in: repo.upstream)
        let output = try repo.build("file://" + repo.bare)
        #expect(output.status == 0, "\(output.all)")
        let slug = repo.slug(try repo.head())
        #expect(try repo.file("lib/lib.txt", in: slug) == "from the submodule\n")
        #expect(!(try repo.world.slugMembers(slug)).contains { $0.hasSuffix("/.git") })
    }

    /// Started from a git hook (GIT_DIR, GIT_WORK_TREE and GIT_INDEX_FILE set to the hook's
    /// repository), the build works on its own mirror and checkout and leaves that repository be.
    @Test func aGitHooksRepositoryIsLeftAlone() throws {
        let repo = try RepositoryWorld("commit-hook")
        let victim = repo.temp.sub("victim")
        try Shell.git(["init", "--quiet"], in: victim)
        let output = try repo.world.multipack(
            ["build", "file://" + repo.bare + "#v1", "--buildpack", repo.probe, "--slug-dir", repo.slugs],
            extra: ["GIT_DIR": victim + "/.git", "GIT_WORK_TREE": victim, "GIT_INDEX_FILE": victim + "/.git/index"])
        #expect(output.status == 0, "\(output.all)")
        #expect((try? FileManager.default.contentsOfDirectory(atPath: victim)) == [".git"])
        #expect(!FileManager.default.fileExists(atPath: victim + "/.git/index"))
        #expect(try Shell.gitOutput(["for-each-ref"], in: victim).isEmpty)
    }

    @Test func slugDirRefusals() throws {
        let repo = try RepositoryWorld("commit-refusals")
        let url = "file://" + repo.bare
        let both = try repo.build(url, ["--slug", repo.temp.path + "/x.tgz"])
        #expect(both.status == 2 && both.stderr.contains("--slug and --slug-dir both say where the slug goes"))
        try repo.temp.write("a-file", "x")
        let file = try repo.world.multipack(["build", url, "--slug-dir", repo.temp.path + "/a-file"])
        #expect(
            file.status == 2 && file.stderr.contains("--slug-dir \(repo.temp.path)/a-file is not a directory"),
            "\(file.all)")
        let ci = try repo.world.multipack(["ci", url, "--slug-dir", repo.slugs])
        #expect(ci.status != 0)
        // Refused before anything was fetched.
        #expect(!FileManager.default.fileExists(atPath: repo.world.cacheHome + "/multipack/repos"))
    }
}
