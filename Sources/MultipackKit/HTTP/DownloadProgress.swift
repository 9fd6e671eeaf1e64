/// How far a running download is, reported every few seconds (SPEC §9).
public struct DownloadProgress: Sendable, Equatable {
    /// The requested URL, masked.
    public var url: String
    /// Bytes written so far in this attempt.
    public var bytes: Int64
    /// The announced size, when the server sent one.
    public var total: Int64?
    /// Bytes per second since the download started.
    public var bytesPerSecond: Double

    public init(url: String, bytes: Int64, total: Int64?, bytesPerSecond: Double) {
        self.url = Masking.url(url)
        self.bytes = bytes
        self.total = total
        self.bytesPerSecond = bytesPerSecond
    }

    /// A Heroku-style detail line, indented by 7 spaces and without a carriage return (build logs
    /// are not terminals): `       Downloading https://… 12.3 MB of 40.0 MB (30%), 8.1 MB/s, 4 s left`.
    public var line: String {
        var text = "       Downloading \(url) \(Self.format(bytes: bytes))"
        let rate = bytesPerSecond.isFinite ? Int64(max(0, bytesPerSecond).rounded()) : 0
        if let total, total > 0 {
            text += " of \(Self.format(bytes: total)) (\(min(100, bytes * 100 / total))%)"
        }
        text += ", \(Self.format(bytes: rate))/s"
        if let total, total > bytes {
            text += rate > 0 ? ", \(Self.format(seconds: (total - bytes + rate - 1) / rate)) left" : ", stalled"
        }
        return text
    }

    /// `42 s`, `3 min 5 s`, `1 h 2 min`.
    static func format(seconds: Int64) -> String {
        if seconds < 60 { return "\(seconds) s" }
        if seconds < 3600 { return "\(seconds / 60) min \(seconds % 60) s" }
        return "\(seconds / 3600) h \(seconds % 3600 / 60) min"
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
