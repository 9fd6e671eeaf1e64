import Glibc

extension BuildpackList {
    /// Reads and parses the `.buildpacks` at `path`. Anything but a regular file (a directory, a
    /// FIFO, a device) is bad input and is never opened in a way that could block; so is a symlink
    /// out of the app's directory, which is never followed.
    public static func load(_ path: String, directory: String?) throws -> [BuildpackEntry] {
        let bytes: [UInt8]
        do {
            bytes = try Files.readInApp(path, root: Files.parent(of: path), limit: .max)
        } catch let error as FileError where error.errno == EINVAL || error.detail != nil {
            throw MultipackError.usage(
                "The app's .buildpacks is \(error.detail ?? "not a regular file").",
                hint: "Make .buildpacks a plain text file listing one buildpack per line, in the app.")
        }
        return try parse(bytes: bytes, directory: directory)
    }
}
