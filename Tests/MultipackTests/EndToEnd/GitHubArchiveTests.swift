import Foundation
import Testing

/// GitHub repositories are fetched as the commit's tarball, falling back to git; the "GitHub" is a
/// loopback server (MULTIPACK_GITHUB_URL) serving the repository over git's dumb HTTP protocol.
@Suite struct GitHubArchiveTests {
    /// Routes for a bare copy of `repo` at /org/NAME.git (dumb HTTP: plain files) and its tarball
    /// at /org/NAME/archive/COMMIT.tar.gz.
    static func routes(for repo: String, name: String, in temp: TempDir) throws -> (
        routes: [String: LoopbackHTTPServer.Behaviour], commit: String
    ) {
        let bare = temp.path + "/served/\(name).git"
        try Shell.git(["clone", "--quiet", "--bare", repo, bare], in: temp.path)
        try Shell.git(["repack", "-a", "-d", "-q"], in: bare)
        try Shell.git(["update-server-info"], in: bare)
        let commit = try Shell.gitOutput(["rev-parse", "HEAD"], in: repo)
        var routes: [String: LoopbackHTTPServer.Behaviour] = [:]
        let files = FileManager.default.enumerator(atPath: bare)!
        while let relative = files.nextObject() as? String {
            var isDirectory: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: bare + "/" + relative, isDirectory: &isDirectory)
            if isDirectory.boolValue { continue }
            let bytes = try Data(contentsOf: URL(fileURLWithPath: bare + "/" + relative))
            routes["/org/\(name).git/\(relative)"] = .serve(body: Array(bytes))
        }
        let tarball = temp.path + "/\(name)-\(commit).tar.gz"
        let export = try Shell.run(
            "git", ["-C", repo, "archive", "--format=tar.gz", "--prefix=\(name)-\(commit)/", "-o", tarball, "HEAD"],
            environment: Shell.gitEnvironment)
        if export.status != 0 { throw TestFailure(export.all) }
        routes["/org/\(name)/archive/\(commit).tar.gz"] = .serve(
            body: Array(try Data(contentsOf: URL(fileURLWithPath: tarball))))
        return (routes, commit)
    }

    /// Only for a build that keeps nothing: a tarball has no git objects, so a cached copy of it
    /// could not be verified against its commit on a later use (SPEC §5).
    @Test func theCommitsTarballIsUsedInsteadOfACloneWhenNothingIsCached() throws {
        let temp = try TempDir("github")
        let repo = try gitChild("version", in: temp)
        let (routes, commit) = try Self.routes(for: repo, name: "version", in: temp)
        let server = try LoopbackHTTPServer(routes: routes)
        defer { server.stop() }
        let app = try App(nil, in: temp, buildpacks: server.url("/org/version.git#main") + "\n")
        let mp = try Multipack(in: temp)
        let env = ["MULTIPACK_GITHUB_URL": server.url("")]
        // A CACHE_DIR that is a file cannot hold a cache: this build keeps nothing.
        let noCache = temp.path + "/not-a-cache"
        try "".write(toFile: noCache, atomically: true, encoding: .utf8)
        let compile = try mp.shim("compile", [app.build, noCache, app.env], environment: env)
        #expect(compile.status == 0, "\(compile.all)")
        #expect(compile.stdout.contains("@ \(commit.prefix(12)) (downloaded (GitHub archive)"))
        #expect(server.requestCount("/org/version/archive/\(commit).tar.gz") == 1)
        #expect(server.requests("/org/version.git/objects/info/packs").isEmpty, "no clone")
        #expect(app.read("versions-run") == "1\n")

        // With a cache, the commit is cloned (its objects verify it later), then served from there.
        let cold = try mp.shim("compile", [app.build, app.cache, app.env], environment: env)
        #expect(cold.status == 0, "\(cold.all)")
        #expect(cold.stdout.contains("@ \(commit.prefix(12)) (cloned,"), "\(cold.stdout)")
        let warm = try mp.shim("compile", [app.build, app.cache, app.env], environment: env)
        #expect(warm.status == 0, "\(warm.all)")
        #expect(warm.stdout.contains("(cached,"))
        #expect(server.requestCount("/org/version/archive/\(commit).tar.gz") == 1)
    }

    @Test func aRepositoryWithSubmodulesIsClonedInstead() throws {
        let temp = try TempDir("github-sub")
        let repo = try gitChild("version", in: temp)
        // A .gitmodules with no submodule in it is enough to make the tarball unusable.
        try "# no submodules yet\n".write(toFile: repo + "/.gitmodules", atomically: true, encoding: .utf8)
        try Shell.git(["add", "-A"], in: repo)
        try Shell.git(["commit", "--quiet", "-m", "gitmodules"], in: repo)
        let (routes, commit) = try Self.routes(for: repo, name: "version", in: temp)
        let server = try LoopbackHTTPServer(routes: routes)
        defer { server.stop() }
        let app = try App(nil, in: temp, buildpacks: server.url("/org/version.git/") + "\n")
        let mp = try Multipack(in: temp)
        let noCache = temp.path + "/not-a-cache"
        try "".write(toFile: noCache, atomically: true, encoding: .utf8)
        let compile = try mp.shim(
            "compile", [app.build, noCache, app.env], environment: ["MULTIPACK_GITHUB_URL": server.url("")])
        #expect(compile.status == 0, "\(compile.all)")
        #expect(server.requestCount("/org/version/archive/\(commit).tar.gz") == 1)
        #expect(!server.requests("/org/version.git/objects/info/packs").isEmpty, "cloned over git")
        #expect(compile.stdout.contains("@ \(commit.prefix(12)) (cloned,"))
        #expect(app.read("versions-run") == "1\n")
    }
}
