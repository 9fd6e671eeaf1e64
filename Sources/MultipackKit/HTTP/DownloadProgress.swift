/// How far a running download is, reported every few seconds (SPEC §9).
public struct DownloadProgress: Sendable, Equatable {
    /// The requested URL, masked.
    public var url: String
    /// Bytes written so far in this attempt.
    public var bytes: Int64
    /// The announced size, when the server sent one.
    public var total: Int64?
    /// Bytes per second since the previous report.
    public var bytesPerSecond: Double

    public init(url: String, bytes: Int64, total: Int64?, bytesPerSecond: Double) {
        self.url = Masking.url(url)
        self.bytes = bytes
        self.total = total
        self.bytesPerSecond = bytesPerSecond
    }

    /// A Heroku-style detail line, indented by 7 spaces and without a carriage return (build logs
    /// are not terminals): `       Downloading https://… 12.3 MB of 40.0 MB (8.1 MB/s)`.
    public var line: String {
        var text = "       Downloading \(url) \(Self.format(bytes: bytes))"
        if let total {
            text += " of \(Self.format(bytes: total))"
        }
        let rate = bytesPerSecond.isFinite ? Int64(max(0, bytesPerSecond).rounded()) : 0
        return text + " (\(Self.format(bytes: rate))/s)"
    }

    /// Formats a byte count with decimal units and one decimal place: `512 B`, `1.5 kB`, `12.3 MB`.
    public static func format(bytes: Int64) -> String {
        if bytes < 1000 {
            return "\(max(0, bytes)) B"
        }
        let units = ["kB", "MB", "GB", "TB"]
        var unit = 0
        var scale: Int64 = 1000
        while unit < units.count - 1 && bytes >= scale * 1000 - scale / 20 {
            unit += 1
            scale *= 1000
        }
        // Tenths rounded half up, computed in integers so that no floating-point formatting is
        // needed.
        let tenths = (bytes * 10 + scale / 2) / scale
        return "\(tenths / 10).\(tenths % 10) \(units[unit])"
    }
}
