/// Why reading, extracting or writing an archive failed. `description` is a full sentence that
/// names the archive member involved, ready to be shown to a Heroku user.
public struct ArchiveError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// The data ends before the archive does.
        case truncated
        /// The compressed stream or a tar header is damaged.
        case corrupt
        /// A member would write, or point, outside the destination.
        case unsafeMember
        /// A member of a kind we never extract (device, fifo, sparse file, …).
        case unsupportedMember
        /// More bytes or entries than `ArchiveLimits` allow.
        case limitExceeded
        /// The operating system refused a read, write or create.
        case system
    }

    public let kind: Kind
    /// The member's path as written in the archive, when the error concerns one.
    public let member: String?
    public let message: String

    public init(_ kind: Kind, member: String? = nil, _ message: String) {
        self.kind = kind
        self.member = member
        self.message = message
    }

    public var description: String { message }

    /// A member name as messages show it: a hostile one can be megabytes long.
    static func cut(_ name: String) -> String {
        guard name.utf8.count > 200 else { return name }
        return String(name.prefix(200)) + "…"
    }

    static func truncated(_ detail: String) -> ArchiveError {
        ArchiveError(.truncated, "The archive is truncated: \(detail).")
    }

    static func unsafe(_ member: String, _ why: String) -> ArchiveError {
        ArchiveError(.unsafeMember, member: member, "Refused archive member '\(member)': \(why).")
    }
}

/// Caps that keep a hostile or broken archive from filling the disk.
public struct ArchiveLimits: Sendable, Equatable {
    /// Upper bound on the sum of the regular files' sizes.
    public var maxTotalBytes: Int64
    /// Upper bound on the number of members (files, directories, links).
    public var maxEntries: Int

    public init(maxTotalBytes: Int64, maxEntries: Int) {
        self.maxTotalBytes = maxTotalBytes
        self.maxEntries = maxEntries
    }

    /// 1 GiB and 50 000 members: far above any real buildpack.
    public static let `default` = ArchiveLimits(maxTotalBytes: 1 << 30, maxEntries: 50_000)
}

/// What `extractArchive` wrote.
public struct ExtractionSummary: Sendable, Equatable {
    /// Members extracted: files, directories, symlinks and hard links.
    public var entries: Int
    /// Bytes of regular-file content written.
    public var bytes: Int64
}
