import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// SPEC §11: every failure is a sentence, never a Swift error dump; sockets and FIFOs in an app
/// are skipped by local builds, never opened (a FIFO once blocked `multipack build` for ever).
@Suite struct NoErrorDumpTests {
    static let dumps = ["CocoaError", "NSURL", "POSIXError(", "Error(code:"]

    private func expectNoDump(_ output: Output, _ what: String) {
        for dump in Self.dumps {
            #expect(!output.all.contains(dump), "\(what) printed a Swift error dump: \(output.all.prefix(2000))")
        }
    }

    /// Runs `command` in a user and mount namespace where `mountPoint` is a tmpfs of `size`.
    private func inTmpfs(_ mountPoint: String, size: String, _ command: [String], environment: [String: String])
        throws -> Output
    {
        try Shell.run(
            "timeout",
            [
                // Root in a mount namespace of its own: in a user namespace that maps only root,
                // root's local build has no id that owns nothing to run as, and is refused.
                "120", "unshare", getuid() == 0 ? "-m" : "-Urm", "sh", "-c",
                "mount -t tmpfs -o size=\(size) none \"$0\" && exec \"$@\"",
                mountPoint,
            ]
                + command,
            environment: environment)
    }

    private func makeSocket(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in bytes.enumerated() { raw[i] = byte }
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
            }
        }
    }

    @Test func aFIFOAndASocketInTheAppAreSkippedNeverOpened() throws {
        let world = try LocalWorld("special-files")
        let app = try world.app()
        #expect(mkfifo(app + "/pipe", 0o644) == 0)
        #expect(makeSocket(app + "/sock"))
        let result = try Shell.run(
            "timeout", ["120", Repo.binary, "build", app], in: world.temp.path, environment: world.environment)
        #expect(result.status == 0, "\(result.all.suffix(3000))")
        #expect(result.all.contains("Skipped pipe"))
        #expect(result.all.contains("Skipped sock"))
        expectNoDump(result, "a FIFO and a socket in the app")
    }

    @Test func noSpaceLeftOnDeviceIsASentence() throws {
        let world = try LocalWorld("enospc")
        let app = try world.app()
        try Data(count: 2 << 20).write(to: URL(fileURLWithPath: app + "/big.bin"))
        // HOME, XDG_CACHE_HOME and TMPDIR all live on a 256 KB tmpfs: copying the app runs out.
        let result = try inTmpfs(
            world.temp.path + "/tmp", size: "256k", [Repo.binary, "build", app],
            environment: world.environment.merging(["HOME": world.tmp, "XDG_CACHE_HOME": world.tmp + "/xdg"]) { $1 })
        #expect(result.status == 1, "\(result.all.suffix(3000))")
        #expect(result.all.contains("No space left on device"))
        expectNoDump(result, "ENOSPC")

        // The same through compile: a local child copied into a full TMPDIR and cache.
        let temp = try TempDir("enospc-compile")
        let child = temp.sub("child")
        try FileManager.default.copyItem(atPath: Repo.fixtures + "/buildpacks/python", toPath: child + "/bp")
        try Data(count: 2 << 20).write(to: URL(fileURLWithPath: child + "/bp/big.bin"))
        let compileApp = try App(nil, in: temp, buildpacks: child + "/bp\n")
        let small = temp.sub("small")
        let mp = try Multipack(in: temp)
        let compile = try inTmpfs(
            small, size: "256k", [mp.dir + "/bin/compile", compileApp.build, small + "/cache", compileApp.env],
            environment: Multipack.environment(["TMPDIR": small]))
        #expect(compile.status == 1, "\(compile.all.suffix(3000))")
        expectNoDump(compile, "ENOSPC in compile")
    }

    @Test func aCrossDeviceCacheIsNoDump() throws {
        let temp = try TempDir("exdev")
        let archive = temp.path + "/bp.tgz"
        let packed = try Shell.run("tar", ["-C", Repo.fixtures + "/buildpacks/python", "-czf", archive, "."])
        #expect(packed.status == 0)
        let server = try LoopbackHTTPServer(routes: [
            "/bp.tgz": .serve(body: Array(try Data(contentsOf: URL(fileURLWithPath: archive))))
        ])
        defer { server.stop() }
        let app = try App(nil, in: temp, buildpacks: server.url("/bp.tgz") + "\n")
        let mp = try Multipack(in: temp)
        // TMPDIR on a tmpfs, CACHE_DIR on the disk: renaming between them is EXDEV.
        let tmp = temp.sub("tmpfs")
        let compile = try inTmpfs(
            tmp, size: "64m", [mp.dir + "/bin/compile", app.build, app.cache, app.env],
            environment: Multipack.environment(["TMPDIR": tmp]))
        #expect(compile.status == 0 || compile.stderr.contains(" !     "), "\(compile.all.suffix(3000))")
        expectNoDump(compile, "EXDEV")
    }

    @Test func namesTooLongAreSentences() throws {
        let temp = try TempDir("enametoolong")
        let app = try App(nil, in: temp, buildpacks: "./" + String(repeating: "n", count: 300) + "\n")
        let mp = try Multipack(in: temp)
        let compile = try mp.shim(
            "compile", [app.build, app.cache, app.env], environment: ["TMPDIR": temp.sub("tmp")])
        #expect(compile.status != 0)
        expectNoDump(compile, "a 300-byte name in .buildpacks")

        let world = try LocalWorld("enametoolong-build")
        let long =
            world.temp.path + "/"
            + Array(repeating: String(repeating: "d", count: 200), count: 25)
            .joined(separator: "/")
        for verb in [["build", long], ["build", world.temp.path, "--buildpack", long]] {
            let result = try world.multipack(verb)
            #expect(result.status != 0)
            expectNoDump(result, "a path longer than PATH_MAX: \(verb[0])")
        }
    }
}
