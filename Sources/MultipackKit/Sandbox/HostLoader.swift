import CMultipackSpawn
import Glibc

/// multipack's own binary on a root that is not this machine's (SPEC §15): a stack image has
/// another glibc and no Swift runtime, so the binary runs there through this machine's loader,
/// with the directories its libraries come from (glibc's, a debug build's Swift runtime's, and
/// those of what multipack opens on first use) bound read-only at `/run/multipack/host/lib/<n>`.
/// The loader is given those directories as an argument (`--library-path`), never as
/// `LD_LIBRARY_PATH`, and skips the root's `ld.so.cache`: only multipack's own process reads
/// them, and what it starts there (buildpacks, hooks, git, bash) runs on the stack's own libraries
/// and never finds these on its paths. Whole directories, not each library: a directory is one
/// mount, and knowing each library multipack may open would mean loading them all first.
struct HostLoader: Sendable, Equatable {
    /// Where the directories are inside, one numbered directory each.
    static let directory = "/run/multipack/host/lib"

    /// This machine's loader, as a real path (`/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2`).
    var loader: String
    /// The directories, in the order the loader searched them for this process.
    var directories: [String]

    /// The libraries multipack opens with dlopen on first use (HTTP/Curl.swift, Support/Digest.swift,
    /// CMultipackYaml, Archive/Zstd.swift): their directories are bound too.
    static let openedOnUse = ["libcurl.so.4", "libcrypto.so.3", "libyaml-0.so.2", "libzstd.so.1"]
    /// Where a loader looks by default, for the libraries not loaded yet.
    static let systemDirectories = [
        "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib", "/lib",
    ]

    /// This process's loader and the directories of its libraries; nil for a static binary,
    /// which needs no loader.
    static func current() -> HostLoader? {
        let (loader, libraries) = loaded()
        guard let loader, let realLoader = StackRoot.realPath(loader) else { return nil }
        var directories: [String] = []
        func add(_ directory: String) {
            guard let real = StackRoot.realPath(directory), !directories.contains(real) else { return }
            directories.append(real)
        }
        add(parent(realLoader))
        for library in libraries { add(parent(library)) }
        for name in openedOnUse {
            let searched = directories + systemDirectories
            if let found = searched.first(where: { Files.exists($0 + "/" + name) }) { add(found) }
        }
        return HostLoader(loader: realLoader, directories: directories)
    }

    /// The loader and the libraries this process has loaded, by the paths the loader found them at.
    static func loaded() -> (loader: String?, libraries: [String]) {
        var buffer = [CChar](repeating: 0, count: 16 << 10)
        let needed = multipack_loaded_objects(&buffer, buffer.count)
        if needed >= buffer.count {
            buffer = [CChar](repeating: 0, count: needed + 1)
            _ = multipack_loaded_objects(&buffer, buffer.count)
        }
        let lines = Files.string(buffer).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let loader = lines.first.flatMap { $0.hasPrefix("/") ? $0 : nil }
        return (loader, lines.dropFirst().filter { !$0.isEmpty })
    }

    /// Whether the binary needs the loader on `root`: on any root but this machine's, and on this
    /// machine's when something it loaded lies in a directory that root does not show (a Swift
    /// runtime under a home directory).
    static func isNeeded(onRoot root: String, shows shown: (String) -> Bool) -> Bool {
        guard root == "/" else { return true }
        let (loader, libraries) = loaded()
        return ([loader].compactMap { $0 } + libraries).contains { path in
            !shown(path.split(separator: "/").first.map(String.init) ?? "")
        }
    }

    /// Each directory inside.
    var directoriesInside: [String] { directories.indices.map { "\(Self.directory)/\($0)" } }

    /// The loader inside: in its own directory's place.
    var loaderInside: String { "\(Self.directory)/0/\(Self.name(loader))" }

    /// Every directory, bound read-only.
    func bind(into sandbox: inout Sandbox) {
        for (source, target) in zip(directories, directoriesInside) { sandbox.bind(source, at: target) }
    }

    /// The command line that runs `binary` (a path inside) through the loader.
    func command(running binary: String) -> [String] {
        [loaderInside] + Self.options(libraryPath: directoriesInside) + [binary]
    }

    static func options(libraryPath: [String]) -> [String] {
        ["--inhibit-cache", "--library-path", libraryPath.joined(separator: ":")]
    }

    /// How this process starts its own binary again with `arguments` (a local build's stages start
    /// one per verb): through the same loader and directories when that is how it was started.
    static func relaunch(_ arguments: [String]) -> (executable: String, arguments: [String]) {
        let image = LocalBuild.processImage()
        guard image.hasPrefix(directory + "/"), let binary = CommandLine.arguments.first else {
            return (image, arguments)
        }
        let inside = Files.list(directory).compactMap(Int.init).sorted().map { "\(directory)/\($0)" }
        return (image, options(libraryPath: inside) + [binary] + arguments)
    }

    private static func parent(_ path: String) -> String {
        String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)])
    }

    private static func name(_ path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? path
    }
}
