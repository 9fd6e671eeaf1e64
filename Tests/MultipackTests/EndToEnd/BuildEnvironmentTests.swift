import Foundation
import Testing

/// What of the caller's environment a buildpack sees (SPEC §12, §15): what `--pass-env` names,
/// and never a `MULTIPACK_*` of multipack's own, on Heroku or locally.
@Suite struct BuildEnvironmentTests {
    /// A runtime tarball as a mirror serves it (`runtime.tar.gz` holding `VERSION`).
    static func runtimeTarball(in temp: TempDir) throws -> [UInt8] {
        try temp.write("runtime/VERSION", "3.12.7-mirrored\n")
        let tar = try Shell.run("tar", ["czf", temp.path + "/runtime.tar.gz", "-C", temp.path + "/runtime", "."])
        #expect(tar.status == 0, "\(tar.all)")
        return Array(try Data(contentsOf: URL(fileURLWithPath: temp.path + "/runtime.tar.gz")))
    }

    /// The fixture reads its mirror only from its process environment, as the Python buildpack
    /// reads BUILDPACK_S3_BASE_URL: a config var does not reach it there, --pass-env does.
    @Test(arguments: ["bubblewrap", "off"])
    func passEnvHandsTheMirrorToTheBuildpacksAndNothingElse(sandbox: String) throws {
        let world = try LocalWorld("pass-env-\(sandbox)")
        let server = try LoopbackHTTPServer(routes: [
            "/s3cr3t-mirror/runtime.tar.gz": .serve(body: try Self.runtimeTarball(in: world.temp))
        ])
        defer { server.stop() }
        // Its path holds a token, as a private mirror's URL may.
        let mirror = "http://127.0.0.1:\(server.port)/s3cr3t-mirror"
        let app = try world.app("plain", buildpacks: ["mirrored"])
        let caller = ["RUNTIME_MIRROR_URL": mirror, "UNRELATED": "x", "MULTIPACK_SANDBOX": sandbox]

        let without = try world.multipack(["build", app, "-e", "RUNTIME_MIRROR_URL=" + mirror], extra: caller)
        #expect(without.status == 1, "\(without.all)")
        #expect(without.stderr.contains("RUNTIME_MIRROR_URL is not set"), "\(without.all)")
        #expect(without.stdout.contains("nothing of yours (--pass-env NAME hands one over)"), "\(without.all)")

        let build = try world.multipack(["build", app, "--pass-env", "RUNTIME_MIRROR_URL", "--json"], extra: caller)
        #expect(build.status == 0, "\(build.all)")
        #expect(build.stderr.contains("installed: 3.12.7-mirrored"), "\(build.all)")
        #expect(
            build.stderr.contains("Passing RUNTIME_MIRROR_URL from your environment to the buildpacks (--pass-env)"))
        #expect(build.stderr.contains("Nothing else of your environment reaches them"))
        // Its value is never printed: a mirror URL can hold a token.
        #expect(!build.all.contains("s3cr3t"))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(build.stdout.utf8)) as? [String: Any])
        let seen = try String(
            contentsOfFile: try #require(json["build_directory"] as? String) + "/mirrored.txt", encoding: .utf8)
        #expect(seen.contains("RUNTIME_MIRROR_URL=\(mirror)\n"))
        #expect(seen.contains("own=\n"), "\(seen)")

        // So does ci, and a --buildpack list.
        let list = try world.multipack(
            ["build", app, "--buildpack", world.buildpack("mirrored"), "--pass-env", "RUNTIME_MIRROR_URL"],
            extra: caller)
        #expect(list.status == 0 && list.stdout.contains("installed: 3.12.7-mirrored"), "\(list.all)")
        try #"{"environments": {"test": {"scripts": {"test": "cat .runtime/VERSION"}}}}"#.write(
            toFile: app + "/app.json", atomically: true, encoding: .utf8)
        let ci = try world.multipack(["ci", app, "--pass-env", "RUNTIME_MIRROR_URL"], extra: caller)
        #expect(ci.status == 0 && ci.stdout.contains("3.12.7-mirrored\n"), "\(ci.all)")
    }

    @Test func passEnvRefusesWhatItCannotPass() throws {
        let world = try LocalWorld("pass-env-refused")
        let app = try world.app("plain", buildpacks: ["probe"])
        for (name, message) in [
            ("NOT_SET_HERE", "--pass-env NOT_SET_HERE hands NOT_SET_HERE from your environment to the buildpacks, but"),
            ("MULTIPACK_RELEASE", "multipack's own settings configure multipack, never a buildpack"),
            ("PATH", "the build sets PATH itself, as Heroku does"), ("1BAD", "--pass-env takes a variable's name"),
        ] {
            let build = try world.multipack(["build", app, "--pass-env", name], extra: ["MULTIPACK_RELEASE": "last"])
            #expect(build.status == 2, "\(name): \(build.all)")
            #expect(build.stderr.contains(message), "\(name): \(build.stderr)")
        }
    }

    /// Heroku's side: bin/compile through the shim, with multipack's own variables in its
    /// environment and a user's MULTIPACK_ config var in ENV_DIR.
    @Test func noOwnVariableReachesAChildOrHookOnHeroku() throws {
        let temp = try TempDir("own-heroku")
        let probe = try gitChild("env-probe", in: temp)
        let app = try App(
            "plain", in: temp, buildpacks: "\(probe)\n", config: ["MULTIPACK_USER_NOTE": "mine"])
        try temp.write(
            "build/bin/post_compile", "#!/usr/bin/env bash\ncompgen -e | grep '^MULTIPACK_' > own-in-hook.txt\n",
            executable: true)
        let mp = try Multipack(in: temp)
        let compile = try mp.shim(
            "compile", [app.build, app.cache, app.env],
            environment: ["MULTIPACK_FETCH_PARALLELISM": "2", "MULTIPACK_STALL_SECONDS": "30"])
        #expect(compile.status == 0, "\(compile.all)")
        #expect(try #require(app.read("env-probe.txt")).contains("own=\n"), "\(app.read("env-probe.txt") ?? "")")
        #expect(app.read("own-in-hook.txt") == "MULTIPACK_USER_NOTE\n")
        // The combined export unsets nothing of multipack's either.
        let export = try String(contentsOfFile: mp.dir + "/export", encoding: .utf8)
        #expect(!export.contains("MULTIPACK_"), "\(export)")
    }

    /// A local build's: through multipack over .buildpacks, a --buildpack list and ci's scripts.
    @Test func noOwnVariableReachesAChildOrHookLocally() throws {
        let world = try LocalWorld("own-local")
        let app = try world.app("plain", buildpacks: ["env-probe"])
        try world.temp.write(
            "app/bin/post_compile", "#!/usr/bin/env bash\ncompgen -e | grep '^MULTIPACK_' > own-in-hook.txt\n",
            executable: true)
        try
            #"{"environments": {"test": {"scripts": {"test": "echo \"own-in-test=$(compgen -e | grep '^MULTIPACK_' | tr '\\n' ' ')\""}}}}"#
            .write(toFile: app + "/app.json", atomically: true, encoding: .utf8)
        let caller = ["MULTIPACK_FETCH_PARALLELISM": "2", "MULTIPACK_RELEASE": "merge"]
        for arguments in [[app], [app, "--buildpack", world.buildpack("env-probe")]] {
            let build = try world.multipack(
                ["build"] + arguments + ["-e", "MULTIPACK_USER_NOTE=mine", "--json"], extra: caller)
            #expect(build.status == 0, "\(build.all)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(build.stdout.utf8)) as? [String: Any])
            let buildDir = try #require(json["build_directory"] as? String)
            let probe = try String(contentsOfFile: buildDir + "/env-probe.txt", encoding: .utf8)
            #expect(probe.contains("own=\n"), "\(probe)")
            if arguments.count == 1 {
                #expect(
                    try String(contentsOfFile: buildDir + "/own-in-hook.txt", encoding: .utf8)
                        == "MULTIPACK_USER_NOTE\n")
            }
        }
        let ci = try world.multipack(["ci", app, "-e", "MULTIPACK_USER_NOTE=mine"], extra: caller)
        #expect(ci.status == 0, "\(ci.all)")
        #expect(ci.stdout.contains("own-in-test=MULTIPACK_USER_NOTE \n"), "\(ci.all)")
    }
}
