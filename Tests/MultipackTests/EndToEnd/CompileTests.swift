import Foundation
import Testing

/// End to end through the bin/ shims, with children that are git repositories made in a temp dir.
@Suite struct CompileTests {
    @Test func pythonNodeAppBuildsWithHooksOnceAndAMergedRelease() throws {
        let temp = try TempDir("pynode")
        let node = try gitChild("node", in: temp)
        let python = try gitChild("python", in: temp)
        let app = try App(
            "python-node", in: temp, buildpacks: "file://\(node)\n\(python)\n", config: ["SECRET_CONFIG": "hunter2"])
        let mp = try Multipack(in: temp)

        #expect(try mp.shim("detect", [app.build]).stdout == "Multipack\n")
        let compile = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(compile.status == 0, "\(compile.all)")
        // Python's compile found the node that the earlier child installed.
        #expect(compile.stdout.contains("found v20.0.0-fixture at \(app.build)/.heroku/node/bin/node"))
        // Each hook ran once: held back from the Python child, which would have run them too.
        #expect(!compile.stdout.contains("running bin/post_compile"))
        let post = try #require(app.read("post_compile.log"))
        #expect(post.split(separator: "\n").count == 1)
        #expect(post.contains("node=\(app.build)/.heroku/node/bin/node"))
        #expect(post.contains("python=\(app.build)/.heroku/python/bin/python"))
        #expect(post.contains("SECRET_CONFIG=hunter2"))
        #expect(app.read("pre_compile.log")?.split(separator: "\n").count == 1)
        // post_compile ran after the last child.
        let lastChild = try #require(compile.stdout.range(of: "python installed"))
        let postRan = try #require(compile.stdout.range(of: "post_compile (app hook)"))
        #expect(lastChild.upperBound < postRan.lowerBound)
        // The hooks are back in place.
        #expect(app.exists("bin/pre_compile") && app.exists("bin/post_compile"))
        // Heading with position, url and resolved commit; summary.
        let nodeCommit = try Shell.gitOutput(["rev-parse", "HEAD"], in: node)
        #expect(compile.stdout.contains("=====> [1/2] file://\(node) @ \(nodeCommit.prefix(12))"))
        #expect(compile.stdout.contains("=====> Summary"))
        #expect(compile.stdout.contains("process type web from [2/2] Python (fixture)"))
        #expect(compile.stdout.contains("process type assets from [1/2] Node.js (fixture)"))

        let release = try mp.shim("release", [app.build])
        #expect(release.status == 0)
        #expect(release.stdout.contains("\"web\": \"gunicorn app:app\""))
        #expect(release.stdout.contains("\"assets\": \"node build.js\""))
        #expect(release.stdout.contains("\"worker\": \"python worker.py\""))
        #expect(release.stdout.contains("\"PYTHONUNBUFFERED\": \"1\""))

        // The combined export reproduces the children's PATH for buildpacks after multipack.
        let sourced = try Shell.run(
            "bash", ["-c", "source \"$1\" && command -v node && command -v python", "bash", mp.dir + "/export"])
        #expect(sourced.status == 0, "\(sourced.all)")
        #expect(
            sourced.stdout.contains(".heroku/node/bin/node") && sourced.stdout.contains(".heroku/python/bin/python"))

        let report = try mp.shim("report", [app.build, app.cache, app.env])
        #expect(report.status == 0)
        #expect(report.stdout.contains("outcome: \"succeeded\""))
        #expect(report.stdout.contains("child_1_version: \"\(nodeCommit)\""))
        #expect(report.stdout.contains("child_2_name: \"Python (fixture)\""))
    }

    @Test func releaseLastKeepsOnlyTheLastChildsRelease() throws {
        let temp = try TempDir("last")
        let node = try gitChild("node", in: temp)
        let python = try gitChild("python", in: temp)
        let app = try App(
            "python-node", in: temp, buildpacks: "\(node)#main\n\(python)#main\n", config: ["MULTIPACK_RELEASE": "last"]
        )
        let mp = try Multipack(in: temp)
        #expect(try mp.shim("compile", [app.build, app.cache, app.env]).status == 0)
        let release = try mp.shim("release", [app.build]).stdout
        #expect(release.contains("\"web\": \"gunicorn app:app\""))
        #expect(!release.contains("assets"))
    }

    @Test func childrenModeLeavesTheHooksToTheChildren() throws {
        let temp = try TempDir("hooks-children")
        let node = try gitChild("node", in: temp)
        let python = try gitChild("python", in: temp)
        let app = try App(
            "python-node", in: temp, buildpacks: "\(node)\n\(python)\n", config: ["MULTIPACK_HOOKS": "children"])
        let mp = try Multipack(in: temp)
        let compile = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(compile.status == 0, "\(compile.all)")
        #expect(compile.stdout.contains("running bin/post_compile"))
        #expect(!compile.stdout.contains("=====> Running bin/post_compile"))
    }

    @Test func aChildThatReplacesPathCannotHideAnEarlierTool() throws {
        let temp = try TempDir("path")
        let children = try ["node", "path-replacer", "env-probe"].map { try gitChild($0, in: temp) }
        let app = try App("python-node", in: temp, buildpacks: children.map { "file://" + $0 }.joined(separator: "\n"))
        let mp = try Multipack(in: temp)
        let compile = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(compile.status == 0, "\(compile.all)")
        let probe = try #require(app.read("env-probe.txt"))
        // The replacer's entries come first (it may shadow), the node child's entry stays.
        #expect(probe.contains("all_nodes=") && probe.contains("\(app.build)/.heroku/node/bin/node "))
        #expect(probe.contains("tool=\(app.build)/.tools/bin/tool"))
        #expect(
            probe.contains("PATH=\(app.build)/.tools/bin:/usr/local/bin:/usr/bin:/bin:\(app.build)/.heroku/node/bin:"))
        // The hooks were held back from the children.
        #expect(probe.contains("hooks=\n") || !probe.contains("post_compile"))
    }

    /// Every child's directory stays until the build ends (SPEC §5, §18): a tool an export puts on
    /// PATH from the child's own directory serves every later child and post_compile, cold and
    /// warm, even when TMPDIR is a symlink and the export names the directory as `pwd -P` shows it.
    @Test func aToolOnPathFromAChildsOwnDirectoryServesEveryLaterStep() throws {
        let temp = try TempDir("own-dir-tool")
        let detect = "#!/usr/bin/env bash\necho Child\n"
        // The first child exports its own tools/ on PATH and a file of its own; the others use them.
        try temp.write("remotes/toolbox/bin/detect", detect, executable: true)
        try temp.write(
            "remotes/toolbox/bin/compile",
            "#!/usr/bin/env bash\nbp=$(cd \"$(dirname \"$0\")/..\" && pwd -P)\n"
                + "printf 'export PATH=\"%s/tools:$PATH\"\\nexport TOOLBOX_CONF=\"%s/conf\"\\n' \"$bp\" \"$bp\" > \"$bp/export\"\n",
            executable: true)
        try temp.write("remotes/toolbox/tools/hello", "#!/bin/sh\necho \"hello from the toolbox\"\n", executable: true)
        try temp.write("remotes/toolbox/conf", "conf of the toolbox\n")
        for name in ["plain", "user"] {
            try temp.write("remotes/\(name)/bin/detect", detect, executable: true)
        }
        try temp.write(
            "remotes/plain/bin/compile",
            "#!/usr/bin/env bash\necho 'export PLAIN=1' > \"$(dirname \"$0\")/../export\"\n", executable: true)
        try temp.write(
            "remotes/user/bin/compile",
            "#!/usr/bin/env bash\nhello > \"$1/user.txt\" && cat \"$TOOLBOX_CONF\" >> \"$1/user.txt\"\n"
                + "d=$(dirname \"$0\")/../..\n"
                + "for i in 2 1; do [ -e \"$d/$i\" ] && echo \"$i kept\" || echo \"$i gone\"; done > \"$1/dirs.txt\"\n",
            executable: true)
        for name in ["toolbox", "plain", "user"] {
            let repo = temp.path + "/remotes/" + name
            try Shell.git(["init", "--quiet", "--initial-branch=main"], in: repo)
            try Shell.git(["add", "-A"], in: repo)
            try Shell.git(["commit", "--quiet", "-m", name], in: repo)
        }
        let list = ["toolbox", "plain", "user", "plain"].map { "file://\(temp.path)/remotes/\($0)" }
        let app = try App(nil, in: temp, buildpacks: list.joined(separator: "\n") + "\n")
        try temp.write(
            "build/bin/post_compile", "#!/bin/sh\nhello > post.txt && cat \"$TOOLBOX_CONF\" >> post.txt\n",
            executable: true)
        let mp = try Multipack(in: temp)
        let link = temp.path + "/tmp-link"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: mp.tmp)
        for round in ["cold", "warm"] {
            let compile = try mp.shim("compile", [app.build, app.cache, app.env], environment: ["TMPDIR": link])
            #expect(compile.status == 0, "\(round): \(compile.all)")
            #expect(app.read("user.txt") == "hello from the toolbox\nconf of the toolbox\n", "\(round)")
            #expect(app.read("post.txt") == "hello from the toolbox\nconf of the toolbox\n", "\(round)")
            #expect(app.read("dirs.txt") == "2 kept\n1 kept\n", "\(round)")
            // Every child's directory is gone once the build is.
            #expect(try FileManager.default.contentsOfDirectory(atPath: mp.tmp).isEmpty, "\(round)")
        }
    }

    /// As on Heroku, every child's directory stays until the build ends (SPEC §5): a later child
    /// reads a file from an earlier child's directory through a path the earlier one wrote into
    /// the build directory (no variable of the build names it), with children in between.
    @Test func aLaterChildReadsAnEarlierChildsFileThroughAPathInTheBuildDir() throws {
        let temp = try TempDir("earlier-child-file")
        let detect = "#!/usr/bin/env bash\necho Child\n"
        try temp.write("children/writer/bin/detect", detect, executable: true)
        try temp.write(
            "children/writer/bin/compile",
            "#!/usr/bin/env bash\nbp=$(cd \"$(dirname \"$0\")/..\" && pwd)\necho \"$bp/share/payload.txt\" > \"$1/.payload-path\"\n",
            executable: true)
        try temp.write("children/writer/share/payload.txt", "kept by the writer\n")
        try temp.write("children/between/bin/detect", detect, executable: true)
        try temp.write("children/between/bin/compile", "#!/usr/bin/env bash\ntrue\n", executable: true)
        try temp.write("children/reader/bin/detect", detect, executable: true)
        try temp.write(
            "children/reader/bin/compile",
            "#!/usr/bin/env bash\ncat \"$(cat \"$1/.payload-path\")\" > \"$1/read.txt\"\n", executable: true)
        let list = ["writer", "between", "between", "between", "reader"].map { "\(temp.path)/children/\($0)" }
        let app = try App(nil, in: temp, buildpacks: list.joined(separator: "\n") + "\n")
        let mp = try Multipack(in: temp)
        let compile = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(compile.status == 0, "\(compile.all)")
        #expect(app.read("read.txt") == "kept by the writer\n")
        // Gone with the build, not before.
        #expect(try FileManager.default.contentsOfDirectory(atPath: mp.tmp).isEmpty)
    }

    /// ENV_DIR is the app's: a FIFO (or a directory) in it is not a config var, and is never
    /// opened in a way that could wait for a writer.
    @Test func aFIFOInEnvDirIsSkippedNotWaitedOn() throws {
        let temp = try TempDir("env-fifo")
        let probe = try gitChild("env-probe", in: temp)
        let app = try App(nil, in: temp, buildpacks: "file://\(probe)\n", config: ["GOOD": "yes"])
        try temp.write("build/bin/post_compile", "#!/bin/sh\necho \"GOOD=$GOOD\" > good.txt\n", executable: true)
        #expect(try Shell.run("mkfifo", [app.env + "/STUCK"]).status == 0)
        try FileManager.default.createDirectory(atPath: app.env + "/ADIR", withIntermediateDirectories: true)
        let mp = try Multipack(in: temp)
        let compile = try Shell.run(
            "timeout", ["20", mp.dir + "/bin/compile", app.build, app.cache, app.env],
            environment: Multipack.environment(["TMPDIR": mp.tmp]))
        #expect(compile.status == 0, "\(compile.all)")
        #expect(app.read("good.txt") == "GOOD=yes\n")
    }

    @Test func buildpacksFileWithBOMCRLFCommentsAndBlankLines() throws {
        let temp = try TempDir("crlf")
        let node = try gitChild("node", in: temp)
        let probe = try gitChild("env-probe", in: temp)
        let list =
            "\u{FEFF}# children\r\n\r\n   file://\(node)#main   # node first\r\n\t\r\n  # indented comment\r\n\(probe)  \r\n"
        let app = try App("python-node", in: temp, buildpacks: list)
        let mp = try Multipack(in: temp)
        #expect(try mp.shim("detect", [app.build]).status == 0)
        let compile = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(compile.status == 0, "\(compile.all)")
        #expect(compile.stdout.contains("Fetching 2 buildpacks"))
        #expect(app.read("env-probe.txt")?.contains("node=\(app.build)/.heroku/node/bin/node") == true)
    }

    @Test func branchTagAndCommitPinsRunTheirVersion() throws {
        let temp = try TempDir("pins")
        let repo = try gitChild("version", in: temp)
        try Shell.git(["tag", "v1"], in: repo)
        let v1 = try Shell.gitOutput(["rev-parse", "HEAD"], in: repo)
        try "2\n".write(toFile: repo + "/VERSION", atomically: true, encoding: .utf8)
        try Shell.git(["commit", "--quiet", "-am", "v2"], in: repo)
        let v2 = try Shell.gitOutput(["rev-parse", "HEAD"], in: repo)
        try Shell.git(["checkout", "--quiet", "-b", "beta"], in: repo)
        try "3\n".write(toFile: repo + "/VERSION", atomically: true, encoding: .utf8)
        try Shell.git(["commit", "--quiet", "-am", "v3"], in: repo)
        try Shell.git(["checkout", "--quiet", "main"], in: repo)
        try "4\n".write(toFile: repo + "/VERSION", atomically: true, encoding: .utf8)
        try Shell.git(["commit", "--quiet", "-am", "v4"], in: repo)

        let list = [
            "file://\(repo)#v1", "file://\(repo)#beta", "file://\(repo)#\(v2)", "file://\(repo)#\(v1.prefix(7))",
            "file://\(repo)",
        ]
        let app = try App(nil, in: temp, buildpacks: list.joined(separator: "\n"))
        let mp = try Multipack(in: temp)
        let compile = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(compile.status == 0, "\(compile.all)")
        #expect(app.read("versions-run") == "1\n3\n2\n1\n4\n")

        // Warm: the same list again comes from the cache, the full SHA without asking git at all.
        let warm = try mp.shim("compile", [app.build, app.cache, app.env], environment: ["BUILDPACK_XTRACE": "1"])
        #expect(warm.status == 0, "\(warm.all)")
        #expect(app.read("versions-run") == "1\n3\n2\n1\n4\n1\n3\n2\n1\n4\n")
        #expect(!warm.stdout.contains("git clone"))
        #expect(warm.stdout.contains("[3/5] file://\(repo)#\(v2) @ \(v2.prefix(12)) (cached"))
        #expect(!warm.stdout.contains("+ git ls-remote -- file://\(repo)#\(v2)"))
    }

    @Test func submodulesAreInitialised() throws {
        let temp = try TempDir("submodule")
        let inner = temp.sub("remotes/inner")
        try "from the submodule\n".write(toFile: inner + "/DATA", atomically: true, encoding: .utf8)
        try Shell.git(["init", "--quiet", "--initial-branch=main"], in: inner)
        try Shell.git(["add", "-A"], in: inner)
        try Shell.git(["commit", "--quiet", "-m", "inner"], in: inner)
        let outer = temp.sub("remotes/outer")
        try TempDir.writeFile(outer + "/bin/detect", "#!/usr/bin/env bash\necho Submodule user\n")
        try TempDir.writeFile(
            outer + "/bin/compile",
            "#!/usr/bin/env bash\ncp \"$(dirname \"$0\")/../vendor/inner/DATA\" \"$1/from-submodule\"\n")
        try Shell.git(["init", "--quiet", "--initial-branch=main"], in: outer)
        try Shell.git(
            ["-c", "protocol.file.allow=always", "submodule", "--quiet", "add", "file://\(inner)", "vendor/inner"],
            in: outer)
        try Shell.git(["add", "-A"], in: outer)
        try Shell.git(["commit", "--quiet", "-m", "outer"], in: outer)
        let app = try App(nil, in: temp, buildpacks: "file://\(outer)\n")
        let mp = try Multipack(in: temp)
        let compile = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(compile.status == 0, "\(compile.all)")
        #expect(app.read("from-submodule") == "from the submodule\n")
    }

    @Test func scriptsWithoutTheirExecutableBitStillRun() throws {
        let temp = try TempDir("noexec")
        let child = try gitChild("no-exec", in: temp)
        #expect(try Shell.gitOutput(["ls-files", "-s", "bin/compile"], in: child).hasPrefix("100644"))
        let app = try App(nil, in: temp, buildpacks: "file://\(child)\n")
        let mp = try Multipack(in: temp)
        let compile = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(compile.status == 0, "\(compile.all)")
        #expect(app.exists("no-exec-compiled"))
    }

    @Test func relativeDirectoryArgumentsWork() throws {
        let temp = try TempDir("relative")
        let node = try gitChild("node", in: temp)
        let probe = try gitChild("env-probe", in: temp)
        _ = try App("python-node", in: temp, buildpacks: "\(node)\n\(probe)\n")
        let mp = try Multipack(in: temp)
        let compile = try mp.shim("compile", ["build", "./cache", "env/"], in: temp.path)
        #expect(compile.status == 0, "\(compile.all)")
        let probeText = try String(contentsOfFile: temp.path + "/build/env-probe.txt", encoding: .utf8)
        #expect(probeText.contains("args=\(temp.path)/build \(temp.path)/cache \(temp.path)/env"))
        #expect(FileManager.default.fileExists(atPath: temp.path + "/cache/node-builds"))
    }

    @Test func configVarsReachTheHooksButNotTheChildren() throws {
        let temp = try TempDir("config")
        let node = try gitChild("node", in: temp)
        let probe = try gitChild("env-probe", in: temp)
        let app = try App(
            "python-node", in: temp, buildpacks: "\(node)\n\(probe)\n",
            config: ["SECRET_CONFIG": "hunter2", "BUILDPACK_XTRACE": "0", "PATH": "/nonexistent"])
        let mp = try Multipack(in: temp)
        let compile = try mp.shim(
            "compile", [app.build, app.cache, app.env],
            environment: ["GIT_DIR": "/tmp/elsewhere", "BUILDPACK_XTRACE": "1"])
        #expect(compile.status == 0, "\(compile.all)")
        let probeText = try #require(app.read("env-probe.txt"))
        #expect(probeText.contains("SECRET_CONFIG=<unset>"))
        #expect(probeText.contains("GIT_DIR=<unset>"))
        // BUILDPACK_XTRACE=0 in ENV_DIR turns it off, even though the environment had it on.
        #expect(probeText.contains("BUILDPACK_XTRACE=<unset>"))
        let post = try #require(app.read("post_compile.log"))
        #expect(post.contains("SECRET_CONFIG=hunter2"))
        // PATH from ENV_DIR is withheld from the hooks: node is still found.
        #expect(post.contains("node=\(app.build)/.heroku/node/bin/node"))
    }

    @Test func xtraceShowsCommandsAndPassesThrough() throws {
        let temp = try TempDir("xtrace")
        let probe = try gitChild("env-probe", in: temp)
        let app = try App(nil, in: temp, buildpacks: "file://\(probe)\n", config: ["BUILDPACK_XTRACE": "yes"])
        let mp = try Multipack(in: temp)
        let compile = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(compile.status == 0, "\(compile.all)")
        // A local child's HEAD is read from its files; cloning it is git's work, shown.
        #expect(
            compile.stdout.contains(
                "+ git -c protocol.file.allow=always -c core.autocrlf=false clone --quiet --template= --recurse-submodules --depth 1 --shallow-submodules -- file://\(probe) "
            ))
        #expect(
            compile.stdout.contains("+ \(app.cache)/")
                || compile.stdout.contains("/bin/compile \(app.build) \(app.cache) \(app.env)"))
        #expect(app.read("env-probe.txt")?.contains("BUILDPACK_XTRACE=1") == true)
    }

    @Test func unknownSwitchValueIsAUsageError() throws {
        let temp = try TempDir("badvar")
        let probe = try gitChild("env-probe", in: temp)
        let app = try App(nil, in: temp, buildpacks: "file://\(probe)\n", config: ["MULTIPACK_RELEASE": "newest"])
        let mp = try Multipack(in: temp)
        let compile = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(compile.status == 2)
        #expect(compile.stderr.contains(" !     MULTIPACK_RELEASE has the value `newest`"))
        #expect(compile.stderr.contains("merge or last"))
    }

    @Test func cacheIsReusedAndChildrenSeeTheirCache() throws {
        let temp = try TempDir("warm")
        let node = try gitChild("node", in: temp)
        let app = try App("python-node", in: temp, buildpacks: "file://\(node)\n")
        let mp = try Multipack(in: temp)
        let cold = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(cold.status == 0, "\(cold.all)")
        #expect(cold.stdout.contains("(cloned,"))
        let warm = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(warm.status == 0, "\(warm.all)")
        #expect(warm.stdout.contains("(cached,"))
        #expect(warm.stdout.contains("this is build 2 with this cache"))
        // Only .multipack/ is ours in CACHE_DIR; the child's file sits beside it.
        let entries = try FileManager.default.contentsOfDirectory(atPath: app.cache).sorted()
        #expect(entries == [".multipack", "node-builds"])
    }

    @Test func aLocalChildsNewCommitIsFetchedByTheNextBuild() throws {
        let temp = try TempDir("localmoved")
        let node = try gitChild("node", in: temp)
        let app = try App("python-node", in: temp, buildpacks: "file://\(node)\n")
        let mp = try Multipack(in: temp)
        #expect(try mp.shim("compile", [app.build, app.cache, app.env]).status == 0)
        let compile = try String(contentsOfFile: node + "/bin/compile", encoding: .utf8)
        try (compile + "\necho 'second commit of the child'\n").write(
            toFile: node + "/bin/compile", atomically: true, encoding: .utf8)
        try Shell.git(["commit", "--quiet", "-am", "second"], in: node)
        let head = try Shell.gitOutput(["rev-parse", "HEAD"], in: node)
        let moved = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(moved.status == 0, "\(moved.all)")
        #expect(moved.stdout.contains("@ \(head.prefix(12)) (cloned,"))
        #expect(moved.stdout.contains("second commit of the child"))
    }

    @Test func unreachableRemoteFallsBackToTheCachedCopy() throws {
        let temp = try TempDir("offline")
        let node = try gitChild("node", in: temp)
        let app = try App("python-node", in: temp, buildpacks: "file://\(node)#main\n")
        let mp = try Multipack(in: temp)
        #expect(try mp.shim("compile", [app.build, app.cache, app.env]).status == 0)
        try FileManager.default.moveItem(atPath: node, toPath: node + "-gone")
        let offline = try mp.shim("compile", [app.build, app.cache, app.env])
        #expect(offline.status == 0, "\(offline.all)")
        #expect(offline.stderr.contains(" !     Could not reach file://\(node)"))
        #expect(offline.stdout.contains("cached (network failed)"))
    }
}

extension TempDir {
    static func writeFile(_ path: String, _ text: String) throws {
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
    }
}
