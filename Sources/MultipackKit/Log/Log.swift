import Glibc

/// Heroku-style build output (SPEC §9), written straight to the file descriptors with no buffer,
/// so that it interleaves correctly with the children's own output on the same descriptors.
public struct Log: Sendable {
    public var write: @Sendable (String, Int32) -> Void

    public init(write: @escaping @Sendable (String, Int32) -> Void = Log.writeToDescriptor) {
        self.write = write
    }

    /// One of multipack's own steps: `=====> …`.
    public func step(_ text: String) { write("=====> \(Masking.text(text))\n", 1) }

    /// A detail under a step, indented by 7 spaces.
    public func detail(_ text: String) { write("       \(Masking.text(text))\n", 1) }

    /// A warning: ` !     …` lines on stderr, set off by blank lines as Heroku's own buildpacks
    /// print them, so that it stands out in the build log.
    public func warning(_ text: String) {
        write("\n" + text.lines.map { " !     \(Masking.text(String($0)))\n" }.joined() + "\n", 2)
    }

    /// With `BUILDPACK_XTRACE` on, prints each command before it runs; otherwise does nothing.
    public func tracer(_ enabled: Bool) -> @Sendable (Command) -> Void {
        { [self] command in
            if enabled { detail("+ " + command.traceLine) }
        }
    }

    /// The error block every failure ends with, on stderr.
    public func failure(_ error: any Error) {
        write("\n" + MultipackError(error).lines.map { " !     \($0)\n" }.joined() + "\n", 2)
    }

    public static let writeToDescriptor: @Sendable (String, Int32) -> Void = { text, descriptor in
        _ = Files.writeAll(Array(text.utf8), to: descriptor)
    }
}

func formatSeconds(_ seconds: Double) -> String {
    if seconds < 10 {
        let hundredths = Int((seconds * 100).rounded())
        return "\(hundredths / 100).\(String(hundredths % 100).leftPadded(to: 2))s"
    }
    if seconds < 60 { return "\(Int(seconds.rounded()))s" }
    let whole = Int(seconds.rounded())
    return "\(whole / 60)m\(String(whole % 60).leftPadded(to: 2))s"
}
