import CMultipackSpawn
import Glibc

/// multipack's own binary on a root that is not this machine's (SPEC §15): a stack image has
/// another glibc and no Swift runtime, so the binary runs there through this machine's loader and
/// the very libraries it loaded here (glibc, a debug build's Swift runtime, and what multipack opens
/// on first use), bound read-only at `/run/multipack/host/lib`. The loader is given that directory
/// as an argument (`--library-path`), never `LD_LIBRARY_PATH`, and skips the root's
/// `ld.so.cache`: only multipack's own process reads these libraries, and what it starts there
/// (buildpacks, hooks, git, bash) runs on the stack's own and never finds these on its paths.
struct HostLoader: Sendable, Equatable {
    /// Where the loader and the libraries are inside.
    static let directory = "/run/multipack/host/lib"

    /// This machine's loader, as the binary names it (`/lib64/ld-linux-x86-64.so.2`).
    var loader: String
    /// The libraries, each by the path its name was found at: the name is what the loader looks for.
    var libraries: [String]

    /// The libraries multipack opens with dlopen on first use (HTTP/Curl.swift, Support/Digest.swift,
    /// CMultipackYaml, Archive/Zstd.swift), one of each group: loaded here first, so that they are
    /// among what is bound.
    static let openedOnUse = [
        ["libcurl.so.4"], ["libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so"], ["libyaml-0.so.2", "libyaml.so"],
        ["libzstd.so.1", "libzstd.so"],
    ]

    /// What this process has loaded (after loading what it opens on use, when `preloading`); nil for
    /// a static binary, which needs no loader.
    static func current(preloading: Bool = true) -> HostLoader? {
        if preloading {
            for group in openedOnUse {
                _ = group.first { multipack_preload($0) == 0 }
            }
        }
        var buffer = [CChar](repeating: 0, count: 16 << 10)
        var needed = multipack_loaded_objects(&buffer, buffer.count)
        if needed >= buffer.count {
            buffer = [CChar](repeating: 0, count: needed + 1)
            needed = multipack_loaded_objects(&buffer, buffer.count)
        }
        let lines = Files.string(buffer).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let loader = lines.first, loader.hasPrefix("/") else { return nil }
        var seen: Set<String> = [Self.name(loader)]
        let libraries = lines.dropFirst().filter { !$0.isEmpty && seen.insert(Self.name($0)).inserted }
        return HostLoader(loader: loader, libraries: libraries)
    }

    /// Whether the binary can run on `root` as it is: on this machine's own root, when every
    /// object it loaded lies in a directory that root shows at its own path.
    static func isNeeded(onRoot root: String, shows shown: (String) -> Bool) -> Bool {
        guard root == "/" else { return true }
        guard let loaded = current(preloading: false) else { return false }
        return ([loaded.loader] + loaded.libraries).contains { path in
            !shown(path.split(separator: "/").first.map(String.init) ?? "")
        }
    }

    /// The loader inside.
    var loaderInside: String { Self.directory + "/" + Self.name(loader) }

    /// The loader and every library, bound read-only at `directory`.
    func bind(into sandbox: inout Sandbox) {
        for path in [loader] + libraries {
            sandbox.bind(path, at: Self.directory + "/" + Self.name(path))
        }
    }

    /// The command line that runs `binary` (a path inside) through the loader.
    func command(running binary: String) -> [String] {
        [loaderInside] + Self.loaderOptions + [binary]
    }

    static let loaderOptions = ["--inhibit-cache", "--library-path", directory]

    /// How this process starts its own binary again with `arguments` (a local build's stages start
    /// one per verb): through the same loader when that is how it was started.
    static func relaunch(_ arguments: [String]) -> (executable: String, arguments: [String]) {
        let image = LocalBuild.processImage()
        guard image.hasPrefix(directory + "/"), let binary = CommandLine.arguments.first else {
            return (image, arguments)
        }
        return (image, loaderOptions + [binary] + arguments)
    }

    private static func name(_ path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? path
    }
}
