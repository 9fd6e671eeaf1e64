import Glibc

/// The slug: a `tar.gz` of the build directory with every member under `./app/`, as Heroku's
/// slug compiler makes it, and its size checked against Heroku's limits.
public enum Slug {
    /// Heroku warns above this compressed size (boot time suffers). Sizes are in MiB, as `du -h`
    /// and Heroku's messages count them.
    public static let softLimitBytes: Int64 = 300 << 20
    public static let defaultLimitMB = 500

    /// Packs `directory` into `path` under `./app/`. Written to a temporary name next to `path`
    /// and renamed, so an interrupted pack never leaves a slug that looks whole; what a killed
    /// one left there (`<name>.partial-<pid>-XXXXXX`) is swept first.
    public static func pack(_ directory: String, to path: String) throws -> Int64 {
        let path = Files.absolute(path)
        do {
            try Files.replaceWhole(path) { temporary in
                var writer = try TarGzWriter(path: temporary, options: TarGzWriter.Options(uid: 0, gid: 0))
                try writer.addTree(Files.absolute(directory), prefix: "./app/")
                try writer.finish()
            }
        } catch let stopped as StopRequested {
            throw MultipackError.interrupted(stopped.signal, "while the slug was being written")
        } catch {
            throw MultipackError.build(
                "Could not write the slug \(path)", details: [MultipackError.reason(error)],
                hint:
                    "Check that its directory exists and is writable and that the disk has room, or choose another path with --slug FILE."
            )
        }
        return Files.size(path) ?? 0
    }

    /// Puts a finished slug at `path` (`--slug`): renamed there, or copied whole and then renamed
    /// when `path` is on another file system; a reader of `path` sees the old slug or the new one.
    public static func place(_ slug: String, at path: String) throws {
        if rename(slug, path) == 0 { return }
        let renameError = errno
        do {
            guard renameError == EXDEV else { throw FileError(path: path, action: "write", errno: renameError) }
            try Files.copyFile(slug, to: path, mode: 0o644)
            Files.remove(slug)
        } catch {
            throw MultipackError.build(
                "Could not write the slug \(path)", details: [MultipackError.reason(error)],
                hint:
                    "Check that its directory exists and is writable and that the disk has room, or choose another path with --slug FILE."
            )
        }
    }

    /// Refuses, before anything is built, a `--slug` path multipack must not replace: anything
    /// but a regular file (or a symlink to one or to nothing, replaced, not followed) at the path or at a
    /// sidecar (`PATH.env`, `PATH.release.yml`), and a path whose directory does not exist. A
    /// device, a FIFO or a directory is never written over nor removed.
    static func checkTarget(_ path: String, sidecars: [String]) throws(MultipackError) {
        for (index, file) in ([path] + sidecars).enumerated() {
            var info = stat()
            guard lstat(file, &info) == 0 else { continue }
            var kind = info.st_mode & S_IFMT
            // A symlink is replaced, not followed; one to a device (/dev/stdout) is refused, so
            // that no system link is replaced by a tarball.
            if kind == S_IFLNK, stat(file, &info) == 0 { kind = info.st_mode & S_IFMT }
            guard kind != S_IFREG && kind != S_IFLNK else { continue }
            let what = index == 0 ? "--slug \(path)" : "\(file), which --slug \(path) would replace,"
            throw MultipackError.usage(
                "\(what) is \(Files.kindName(info.st_mode)): multipack replaces only a file there.",
                hint: "Give --slug the path of a new file (or of an earlier slug), e.g. --slug ./slug.tgz.")
        }
        let slash = path.lastIndex(of: "/")
        let parent = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        guard Files.isDirectory(parent) else {
            throw MultipackError.usage(
                "--slug \(path): its directory \(parent) does not exist.",
                hint: "Create it first, or give --slug a path in an existing directory.")
        }
    }

    /// Heroku-style size, as `du -h` prints it: `512B`, `3.4K`, `45.2M`, `1.1G` (powers of 1024).
    public static func formatSize(_ bytes: Int64) -> String {
        guard bytes >= 1024 else { return "\(bytes)B" }
        let (tenths, unit) = scaled(bytes.magnitude)
        return "\(tenths / 10).\(tenths % 10)\(["K", "M", "G", "T"][unit])"
    }

    /// A size of at least 1024 bytes in tenths of its unit and the unit's index (K, M, G, T),
    /// in powers of 1024 as Heroku counts the slug.
    static func scaled(_ bytes: UInt64) -> (tenths: Int, unit: Int) {
        var value = Double(bytes) / 1024
        var unit = 0
        while value >= 1024 && unit < 3 {
            value /= 1024
            unit += 1
        }
        return (Int((value * 10).rounded()), unit)
    }
}
