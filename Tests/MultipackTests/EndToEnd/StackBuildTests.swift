import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `build`, `ci` and `run` on stack images (SPEC §15) from Debian's docker-registry on loopback:
/// small stack-like images made with umoci (busybox, this machine's bash and its libraries, an
/// os-release of their own, no Swift), the real binary, real namespaces.
@Suite struct StackBuildTests {
    let world: LocalWorld
    let registry: RegistryServer
    let layout: OCILayout
    /// A file on this machine that no build on an image may see (removed when the test ends).
    let hostMarker: String

    init() throws {
        world = try LocalWorld("stack-build")
        registry = try RegistryServer(in: world.temp)
        layout = try OCILayout(in: world.temp)
        hostMarker = "/opt/multipack-test-host-only-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try "this machine's\n".write(toFile: hostMarker, atomically: true, encoding: .utf8)
        try layout.create("build") { rootfs in
            try OCILayout.stackRoot(rootfs, id: "stack-build-image")
            try "a lower layer's\n".write(toFile: rootfs + "/etc/gone", atomically: true, encoding: .utf8)
        }
        // The second layer whites the file out.
        try layout.addLayer("build") { try FileManager.default.removeItem(atPath: $0 + "/etc/gone") }
    }

    /// The default (the stack's image) with Docker Hub's names sent to the loopback registry.
    func onImages(_ extra: [String: String] = [:]) -> [String: String] {
        ["MULTIPACK_STACK_ROOT": "", "MULTIPACK_STACK_REGISTRY": registry.host].merging(extra) { $1 }
    }

    /// A buildpack that records what the build sees of its root, in `temp`.
    func probeBuildpack(in temp: TempDir) throws -> String {
        try temp.write("stack-probe/bin/detect", "#!/usr/bin/env bash\necho StackProbe\n", executable: true)
        try temp.write(
            "stack-probe/bin/compile",
            """
            #!/usr/bin/env bash
            {
              echo "OS=$(. /etc/os-release; echo "$ID")"
              echo "GONE=$([ -e /etc/gone ] && echo present || echo gone)"
              echo "HOST_MARKER=$([ -e \(hostMarker) ] && echo visible || echo invisible)"
              echo "SWIFT=$([ -e /opt/swift ] && echo visible || echo invisible)"
              echo "USR_WRITABLE=$(touch /usr/multipack-probe 2>/dev/null && echo yes || echo no)"
              echo "USR_MOUNT=$(awk '$5 == "/usr" { print $6 }' /proc/self/mountinfo | tail -n 1)"
              echo "HOST_LIBRARIES_IN_BASH=$(grep -c /run/multipack /proc/$$/maps)"
              echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH-unset}"
              echo "PATH=$PATH"
              echo "STACK=$STACK"
              echo "HOME=$HOME"
              echo "RESOLVER=$(head -n 1 /etc/resolv.conf)"
              echo "HOSTS=$(head -n 1 /etc/hosts)"
              echo "SSH_AUTH_SOCK=${SSH_AUTH_SOCK-unset} $([ -S "${SSH_AUTH_SOCK:-/none}" ] && echo socket)"
            } > "$1/stack-probe.txt"
            echo "       probed the stack"

            """, executable: true)
        return temp.path + "/stack-probe"
    }

    /// An app whose one buildpack is the probe, in `world`.
    func app(in world: LocalWorld? = nil) throws -> String {
        let world = world ?? self.world
        let app = try world.app("plain", buildpacks: nil)
        try (try probeBuildpack(in: world.temp) + "\n").write(
            toFile: app + "/.buildpacks", atomically: true, encoding: .utf8)
        return app
    }

    func fields(_ path: String) throws -> [String: String] {
        var fields: [String: String] = [:]
        for line in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            fields[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return fields
    }

    func json(_ output: Output) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any]
        return try #require(object, "stdout is not a JSON object: \(output.all)")
    }

    /// As the caller (root, whose builds run as an id that owns nothing) and as an ordinary user,
    /// with either maker of the namespace (root's is always multipack's own).
    @Test(arguments: Runner.allCases, Backend.allCases)
    func aBuildRunsOnTheStacksImageAndSeesNothingOfThisMachine(runner: Runner, backend: Backend) throws {
        defer { unlink(hostMarker) }
        var sandbox = try SandboxWorld("stack-image", runner: runner)
        try registry.push(layout, tag: "build", as: "heroku/heroku:24-build")
        let app = try app(in: sandbox.world)
        let agent = sandbox.world.temp.path + "/agent.sock"
        let socket = try Shell.run(
            "python3", ["-c", "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])", agent])
        #expect(socket.status == 0, "\(socket.all)")
        sandbox.caller = onImages(["MULTIPACK_SANDBOX": backend.rawValue, "SSH_AUTH_SOCK": agent])

        let build = try sandbox.multipack(["build", app, "--json"])

        #expect(build.status == 0, "\(build.all)")
        #expect(build.stderr.contains("Building on the stack image heroku/heroku:24-build (\(registry.host))"))
        let summary = try json(build)
        let root = try #require(summary["root"] as? [String: Any])
        #expect(root["kind"] as? String == "image")
        #expect(root["digest"] as? String == (try layout.manifest("build").digest))
        #expect(root["image"] as? String == "heroku/heroku:24-build (\(registry.host))")
        let probe = try fields(try #require(summary["build_directory"] as? String) + "/stack-probe.txt")
        #expect(probe["OS"] == "stack-build-image", "\(probe)")
        #expect(probe["GONE"] == "gone")
        #expect(probe["HOST_MARKER"] == "invisible")
        #expect(probe["SWIFT"] == "invisible")
        #expect(probe["USR_WRITABLE"] == "no")
        let flags = Set((probe["USR_MOUNT"] ?? "").split(separator: ",").map(String.init))
        #expect(flags.isSuperset(of: ["ro", "nosuid", "nodev"]), "\(probe)")
        // multipack's binary ran through this machine's loader; what it started never saw its libraries.
        #expect(probe["HOST_LIBRARIES_IN_BASH"] == "0")
        #expect(probe["LD_LIBRARY_PATH"] == "unset")
        #expect(probe["PATH"] == "/usr/local/bin:/usr/bin:/bin")
        #expect(probe["STACK"] == "heroku-24" && probe["HOME"] == "/app")
        // This machine's resolver files cover the image's own resolv.conf and stand in for the
        // hosts it lacks.
        for (name, file) in [("RESOLVER", "/etc/resolv.conf"), ("HOSTS", "/etc/hosts")] {
            let line = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").first
            #expect(probe[name] == line.map(String.init) ?? "", "\(probe)")
        }
        #expect(probe["SSH_AUTH_SOCK"] == "/run/multipack/ssh-agent socket", "\(probe)")
        let maker = runner == .caller && getuid() == 0 ? Backend.direct : backend
        #expect((try json(build)["sandbox"] as? String) == maker.name)

        let report = try sandbox.multipack(["report", app])
        #expect(report.status == 0, "\(report.all)")
        #expect(report.stdout.contains("stack_image_digest: \"\(try layout.manifest("build").digest)\""))
        #expect(report.stdout.contains("stack_root_kind: \"image\""))
        #expect(try FileManager.default.contentsOfDirectory(atPath: sandbox.world.tmp).isEmpty)
    }

    @Test func runOfAnAppUsesTheRunImageOfItsStackAndRunOfASlugTheImageNamed() throws {
        try layout.create("run") { try OCILayout.stackRoot($0, id: "stack-run-image") }
        try registry.push(layout, tag: "build", as: "heroku/heroku:22-build")
        try registry.push(layout, tag: "run", as: "heroku/heroku:22")
        try registry.push(layout, tag: "run", as: "test/other:1")
        let app = try app()
        try "web: cat /etc/os-release\n".write(toFile: app + "/Procfile", atomically: true, encoding: .utf8)
        let build = try world.multipack(["build", app, "--stack", "heroku-22", "--json"], extra: onImages())
        #expect(build.status == 0, "\(build.all)")
        let slug = try #require((try json(build)["slug"] as? [String: Any])?["path"] as? String)

        let web = try world.multipack(["run", app], extra: onImages())
        let oneOff = try world.multipack(
            [
                "run", slug, "--stack-image", "\(registry.host)/test/other:1", "--", "sh", "-c",
                ". /etc/os-release; echo $ID; touch /usr/x 2>/dev/null || echo read-only",
            ])

        #expect(web.status == 0, "\(web.all)")
        #expect(web.stderr.contains("Running on the stack image heroku/heroku:22 (\(registry.host))"), "\(web.stderr)")
        #expect(web.stdout.contains("ID=stack-run-image"), "\(web.all)")
        #expect(oneOff.status == 0, "\(oneOff.all)")
        #expect(oneOff.stdout == "stack-run-image\nread-only\n", "\(oneOff.all)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: world.tmp).isEmpty)
    }

    /// `run -- COMMAND` with no app stands on the stack's build image (SPEC §19): the one a
    /// buildpack builds on, not the run image; `--stack` picks the stack, `--stack-image` another.
    @Test func runWithNoAppStandsOnTheStacksBuildImage() throws {
        try layout.create("run") { try OCILayout.stackRoot($0, id: "stack-run-image") }
        try layout.create("other") { try OCILayout.stackRoot($0, id: "stack-other-image") }
        try registry.push(layout, tag: "build", as: "heroku/heroku:22-build")
        try registry.push(layout, tag: "run", as: "heroku/heroku:22")
        try registry.push(layout, tag: "other", as: "test/builder:1")
        let out = world.temp.sub("out")
        let script = ". /etc/os-release; echo \"$ID app=[$(ls -A /app)] home=$HOME stack=$STACK\" > /out/seen"

        let onDefault = try world.multipack(
            ["run", "--stack", "heroku-22", "--mount", out + ":/out", "--", "sh", "-c", script], extra: onImages())
        let seenOnDefault = try? String(contentsOfFile: out + "/seen", encoding: .utf8)
        let named = try world.multipack([
            "run", "--stack-image", "\(registry.host)/test/builder:1", "--mount", out + ":/out", "--", "sh", "-c",
            script,
        ])
        let seenOnNamed = try? String(contentsOfFile: out + "/seen", encoding: .utf8)

        #expect(onDefault.status == 0, "\(onDefault.all)")
        #expect(
            onDefault.stderr.contains("Running on the stack image heroku/heroku:22-build (\(registry.host))"),
            "\(onDefault.stderr)")
        #expect(seenOnDefault == "stack-build-image app=[] home=/app stack=heroku-22\n")
        #expect(named.status == 0, "\(named.all)")
        #expect(seenOnNamed == "stack-other-image app=[] home=/app stack=heroku-24\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: world.tmp).isEmpty)
    }

    /// A commit's slug filed with `--slug-dir` records the image's digest; the same commit is not
    /// built again on the same image, and is once the tag names another image (SPEC §19).
    @Test func aCommitsSlugRecordsTheImageDigestAndANewImageBuildsItAgain() throws {
        try layout.create("other") { try OCILayout.stackRoot($0, id: "stack-other-image") }
        try registry.push(layout, tag: "build", as: "test/stack:1")
        let repo = try RepositoryWorld("stack-commit")
        let arguments = [
            "build", "file://" + repo.bare, "--buildpack", repo.probe, "--slug-dir", repo.slugs, "--stack-image",
            "\(registry.host)/test/stack:1",
        ]
        let commit = try repo.head()

        let first = try repo.world.multipack(arguments)
        let again = try repo.world.multipack(arguments)
        try registry.push(layout, tag: "other", as: "test/stack:1")
        let onNewImage = try repo.world.multipack(arguments)

        #expect(first.status == 0, "\(first.all)")
        let record = try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: "\(repo.slugs)/shop/\(commit).json")))
        let stack = ((record as? [String: Any])?["inputs"] as? [String: Any])?["stack"] as? [String: Any]
        #expect(stack?["digest"] as? String == (try layout.manifest("other").digest), "\(stack ?? [:])")
        #expect(stack?["root"] as? String == "image \(registry.host)/test/stack:1 (\(registry.host))")
        #expect(again.status == 0 && again.stdout.contains("Not built again"), "\(again.all)")
        #expect(onNewImage.status == 0 && onNewImage.stdout.contains("probe compiled"), "\(onNewImage.all)")
        #expect(onNewImage.stdout.contains("the stack: heroku-24 on image"), "\(onNewImage.stdout)")
    }

    @Test func aWarmBuildAsksForTheManifestOnceAndAPinnedOneAsksNothing() throws {
        try registry.push(layout, tag: "build", as: "test/stack:1")
        let digest = try layout.manifest("build").digest
        let app = try app()
        // --stack-image wins over the test environment's MULTIPACK_STACK_ROOT=/.
        let cold = try world.multipack(["build", app, "--stack-image", "\(registry.host)/test/stack:1"])
        #expect(cold.status == 0, "\(cold.all)")
        let before = registry.requests().count

        let warm = try world.multipack(["build", app, "--stack-image", "\(registry.host)/test/stack:1"])

        #expect(warm.status == 0, "\(warm.all)")
        let requests = Array(registry.requests().dropFirst(before))
        #expect(
            requests.map { $0.split(separator: " ").prefix(2).joined(separator: " ") } == [
                "HEAD /v2/test/stack/manifests/1"
            ], "\(requests)")
        let afterWarm = registry.requests().count

        let pinned = try world.multipack([
            "build", app, "--stack-image", "\(registry.host)/test/stack@\(digest)", "--json",
        ])

        #expect(pinned.status == 0, "\(pinned.all)")
        #expect(registry.requests().count == afterWarm, "\(registry.requests().dropFirst(afterWarm))")
        #expect((try json(pinned)["root"] as? [String: Any])?["digest"] as? String == digest)
    }

    @Test func offlineABuildFallsBackToThisMachineWithOneWarningButCIAndANamedImageFail() throws {
        let closed = "127.0.0.1:\(try RegistryServer.freePort())"
        let app = try app()
        // A deadline too short for a retry: the failures below give up at the first refusal.
        let offline = [
            "MULTIPACK_STACK_ROOT": "", "MULTIPACK_STACK_REGISTRY": closed, "CI": "", "MULTIPACK_FETCH_TIMEOUT": "1",
        ]

        let build = try world.multipack(
            ["build", app, "--json"], extra: offline.merging(["MULTIPACK_FETCH_TIMEOUT": ""]) { $1 })

        #expect(build.status == 0, "\(build.all)")
        // A registry that is not there is asked once, not retried: the build goes on at once.
        #expect(!build.stderr.contains("retrying"), "\(build.stderr)")
        let warnings = build.stderr.components(separatedBy: "cannot be reached and is not in the cache").count - 1
        #expect(warnings == 1, "\(build.stderr)")
        #expect(build.stderr.contains("stack pull heroku/heroku:24-build"), "\(build.stderr)")
        let summary = try json(build)
        let root = try #require(summary["root"] as? [String: Any])
        #expect(root["kind"] as? String == "this_machine" && root["offline_fallback"] as? Bool == true, "\(root)")
        let probe = try fields(try #require(summary["build_directory"] as? String) + "/stack-probe.txt")
        let host = try String(contentsOfFile: "/etc/os-release", encoding: .utf8)
        #expect(host.contains("ID=\(probe["OS"] ?? "-")\n"), "\(probe)")

        // Before any failure: a failed build does not keep what `run` would use.
        let run = try world.multipack(
            ["run", app, "--stack-image", "\(closed)/test/stack:1", "--", "true"], extra: offline)
        let failures = [
            ("run --stack-image", run, "\(closed)/test/stack:1"),
            ("ci", try world.multipack(["ci", app], extra: offline), "heroku/heroku:24-build"),
            (
                "CI=1", try world.multipack(["build", app], extra: offline.merging(["CI": "1"]) { $1 }),
                "heroku/heroku:24-build"
            ),
            (
                "--stack-image",
                try world.multipack(["build", app, "--stack-image", "\(closed)/test/stack:1"], extra: offline),
                "\(closed)/test/stack:1"
            ),
        ]
        for (name, output, image) in failures {
            #expect(output.status == 1, "\(name): \(output.all)")
            #expect(
                output.stderr.contains(" !     Could not pull the stack image \(image)"), "\(name): \(output.stderr)")
            #expect(output.stderr.contains("stack pull \(image)"), "\(name): \(output.stderr)")
            #expect(!output.stderr.contains("building on this machine"), "\(name)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: world.tmp).isEmpty)
    }

    @Test func anImageTheRegistryDoesNotHaveIsAFailureAndBadChoicesAreUsageErrors() throws {
        let app = try app()

        let missing = try world.multipack(["build", app], extra: onImages())
        let both = try world.multipack(["build", app, "--stack-image", "x/y:1", "--stack-root", "/"])
        let bad = try world.multipack(["build", app, "--stack-image", "Not An Image"])
        let badRun = try world.multipack(["run", app, "--stack", "heroku-99", "--", "true"])

        #expect(missing.status == 1, "\(missing.all)")
        #expect(missing.stderr.contains("HTTP 404"), "\(missing.stderr)")
        #expect(!missing.stderr.contains("building on this machine"))
        #expect(both.status == 2 && both.stderr.contains("give one"), "\(both.all)")
        #expect(bad.status == 2 && bad.stderr.contains("is not an image reference"), "\(bad.all)")
        #expect(badRun.status == 2, "\(badRun.all)")
    }
}
