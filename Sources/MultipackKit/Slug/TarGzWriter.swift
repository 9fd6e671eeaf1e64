/// Writes a `.tar.gz` as a stream (slugs, release archives): GNU tar format with `L`/`K` headers
/// for long names, gzip at the chosen level. With fixed options and sorted order the output is
/// byte-identical for identical trees.
public struct TarGzWriter {
    public struct Options: Sendable, Equatable {
        /// Every member's mtime; nil keeps each file's own.
        public var mtime: Int64?
        /// Every member's owner; nil keeps each file's own.
        public var uid: UInt32?
        public var gid: UInt32?
        public var uname: String
        public var gname: String
        /// Members in byte order of their names, rather than the file system's order.
        public var sorted: Bool
        /// gzip level, 0–9.
        public var compressionLevel: Int

        public init(
            mtime: Int64? = nil, uid: UInt32? = nil, gid: UInt32? = nil, uname: String = "", gname: String = "",
            sorted: Bool = true, compressionLevel: Int = 6
        ) {
            self.mtime = mtime
            self.uid = uid
            self.gid = gid
            self.uname = uname
            self.gname = gname
            self.sorted = sorted
            self.compressionLevel = compressionLevel
        }

        /// Reproducible archives: mtime 0, owned by root, sorted.
        public static let reproducible = Options(mtime: 0, uid: 0, gid: 0, uname: "root", gname: "root")
    }

    private let options: Options
    private let path: String
    private let output: ArchiveFile
    private let deflater: ZlibDeflater
    /// Uncompressed tar bytes waiting for the compressor.
    private var pending: [UInt8]
    private var pendingCount = 0
    private var compressed: [UInt8]
    private var finished = false

    /// Creates (or truncates) the archive at `path`.
    public init(path: String, options: Options = Options()) throws {
        self.options = options
        self.path = path
        do {
            output = try ArchiveFile.create(path)
        } catch {
            throw ArchiveError(.system, "Could not create the archive '\(path)': \(ArchiveIOError.text(error)).")
        }
        deflater = try ZlibDeflater(level: min(max(options.compressionLevel, 0), 9))
        pending = [UInt8](repeating: 0, count: archiveChunkSize)
        compressed = [UInt8](repeating: 0, count: archiveChunkSize)
    }

    /// Adds the tree below `directory` with every name starting with `prefix` (e.g. `./app/`),
    /// the prefix's own directory entry first. Symlinks are stored as symlinks, hard links as
    /// separate copies; sockets and fifos are left out.
    public mutating func addTree(_ directory: String, prefix: String) throws {
        var prefix = prefix
        if !prefix.isEmpty && !prefix.hasSuffix("/") { prefix += "/" }
        let info = try sourceInfo(directory, member: prefix)
        if !prefix.isEmpty && prefix != "/" {
            try addDirectory(prefix, mode: info.mode, mtime: info.mtime, owner: info)
        }
        try addContents(of: directory, prefix: prefix)
    }

    public mutating func addDirectory(_ name: String, mode: UInt32 = 0o755, mtime: Int64 = 0) throws {
        try addDirectory(name, mode: mode, mtime: mtime, owner: nil)
    }

    public mutating func addFile(_ name: String, contents: [UInt8], mode: UInt32 = 0o644, mtime: Int64 = 0) throws {
        try header(name, type: "0", size: Int64(contents.count), mode: mode, mtime: mtime, owner: nil)
        try append(contents[...])
        try pad(Int64(contents.count))
    }

    public mutating func addSymlink(_ name: String, target: String, mtime: Int64 = 0) throws {
        try header(name, type: "2", linkTarget: target, mode: 0o777, mtime: mtime, owner: nil)
    }

    /// Writes the end-of-archive marker and the gzip trailer. The writer is unusable afterwards.
    public mutating func finish() throws {
        precondition(!finished, "TarGzWriter.finish() called twice")
        try append([UInt8](repeating: 0, count: 1024)[...])
        try flush(finish: true)
        finished = true
    }

    private mutating func addContents(of directory: String, prefix: String) throws {
        var names: [String]
        do {
            names = try ArchiveTree.contents(of: directory)
        } catch {
            throw ArchiveError(
                .system, member: prefix,
                "Could not list '\(directory)' while writing '\(path)': \(ArchiveIOError.text(error)).")
        }
        if options.sorted { names.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) } }
        for name in names {
            let source = directory + "/" + name
            let member = prefix + name
            let info = try sourceInfo(source, member: member)
            switch info.kind {
            case .directory:
                try addDirectory(member + "/", mode: info.mode, mtime: info.mtime, owner: info)
                try addContents(of: source, prefix: member + "/")
            case .regular:
                try addFile(from: source, member: member, info: info)
            case .symlink:
                let target: String
                do {
                    target = try ArchiveTree.readLink(source)
                } catch {
                    throw ArchiveError(
                        .system, member: member,
                        "Could not read the symlink '\(source)' while writing '\(path)': \(ArchiveIOError.text(error))."
                    )
                }
                try header(member, type: "2", linkTarget: target, mode: 0o777, mtime: info.mtime, owner: info)
            case .other:
                continue
            }
        }
    }

    private mutating func addDirectory(_ name: String, mode: UInt32, mtime: Int64, owner: ArchiveFileInfo?) throws {
        let name = name.hasSuffix("/") ? name : name + "/"
        try header(name, type: "5", mode: mode, mtime: mtime, owner: owner)
    }

    private mutating func addFile(from source: String, member: String, info: ArchiveFileInfo) throws {
        let archive = path
        let failed = { (error: any Error) in
            ArchiveError(
                .system, member: member,
                "Could not read '\(source)' while writing '\(archive)': \(ArchiveIOError.text(error)).")
        }
        let file: ArchiveFile
        do { file = try ArchiveFile.openForReading(source) } catch { throw failed(error) }
        try header(member, type: "0", size: info.size, mode: info.mode, mtime: info.mtime, owner: info)
        var remaining = info.size
        while remaining > 0 {
            if pendingCount == pending.count { try flush(finish: false) }
            let room = Int(min(Int64(pending.count - pendingCount), remaining))
            let n: Int
            do { n = try file.read(into: &pending, at: pendingCount, max: room) } catch { throw failed(error) }
            guard n > 0 else {
                throw ArchiveError(
                    .system, member: member, "Could not write '\(path)': '\(source)' shrank while it was being read.")
            }
            pendingCount += n
            remaining -= Int64(n)
        }
        try pad(info.size)
    }

    private mutating func header(
        _ name: String, type: Character, size: Int64 = 0, linkTarget: String = "", mode: UInt32, mtime: Int64,
        owner: ArchiveFileInfo?
    ) throws {
        precondition(!finished, "TarGzWriter used after finish()")
        let nameBytes = Array(name.utf8)
        let linkBytes = Array(linkTarget.utf8)
        // GNU long names: a pseudo-member "././@LongLink" whose content is the full name.
        if nameBytes.count > 100 { try longLink(nameBytes, type: "L") }
        if linkBytes.count > 100 { try longLink(linkBytes, type: "K") }
        var block = TarHeaderBlock()
        block.set(0, 100, nameBytes.prefix(100))
        block.setNumber(100, 8, Int64(mode & 0o7777))
        block.setNumber(108, 8, Int64(options.uid ?? owner?.uid ?? 0))
        block.setNumber(116, 8, Int64(options.gid ?? owner?.gid ?? 0))
        block.setNumber(124, 12, size)
        block.setNumber(136, 12, max(options.mtime ?? mtime, 0))
        block.bytes[156] = type.asciiValue!
        block.set(157, 100, linkBytes.prefix(100))
        block.set(257, 8, Array("ustar  \0".utf8)[...])
        block.set(265, 32, Array(options.uname.utf8.prefix(31))[...])
        block.set(297, 32, Array(options.gname.utf8.prefix(31))[...])
        block.sealChecksum()
        try append(block.bytes[...])
    }

    private mutating func longLink(_ bytes: [UInt8], type: Character) throws {
        var block = TarHeaderBlock()
        block.set(0, 100, Array("././@LongLink".utf8)[...])
        block.setNumber(100, 8, 0o644)
        block.setNumber(108, 8, 0)
        block.setNumber(116, 8, 0)
        block.setNumber(124, 12, Int64(bytes.count + 1))
        block.setNumber(136, 12, 0)
        block.bytes[156] = type.asciiValue!
        block.set(257, 8, Array("ustar  \0".utf8)[...])
        block.set(265, 32, Array("root".utf8)[...])
        block.set(297, 32, Array("root".utf8)[...])
        block.sealChecksum()
        try append(block.bytes[...])
        try append((bytes + [0])[...])
        try pad(Int64(bytes.count + 1))
    }

    private mutating func pad(_ size: Int64) throws {
        let rest = Int((512 - size % 512) % 512)
        if rest > 0 { try append([UInt8](repeating: 0, count: rest)[...]) }
    }

    private mutating func append(_ bytes: ArraySlice<UInt8>) throws {
        var rest = bytes
        while !rest.isEmpty {
            if pendingCount == pending.count { try flush(finish: false) }
            let n = min(rest.count, pending.count - pendingCount)
            pending.replaceSubrange(pendingCount..<pendingCount + n, with: rest.prefix(n))
            pendingCount += n
            rest = rest.dropFirst(n)
        }
    }

    private func sourceInfo(_ source: String, member: String) throws -> ArchiveFileInfo {
        do {
            return try ArchiveTree.info(source)
        } catch {
            throw ArchiveError(
                .system, member: member,
                "Could not read '\(source)' while writing '\(path)': \(ArchiveIOError.text(error)).")
        }
    }

    private mutating func flush(finish: Bool) throws {
        // Once per chunk: a slug of gigabytes takes a while, and a stop must not wait for it.
        try StopToken.signals.check()
        var consumed = 0
        while true {
            let step = try deflater.deflate(
                pending, consumed..<pendingCount, finish: finish, into: &compressed, 0..<compressed.count)
            consumed += step.consumed
            if step.produced > 0 {
                do {
                    try output.write(compressed, 0..<step.produced)
                } catch {
                    throw ArchiveError(.system, "Could not write the archive '\(path)': \(ArchiveIOError.text(error)).")
                }
            }
            if finish ? step.streamEnded : (consumed == pendingCount && step.produced < compressed.count) { break }
        }
        pendingCount = 0
    }
}

/// One 512-byte tar header being filled in.
struct TarHeaderBlock {
    var bytes = [UInt8](repeating: 0, count: 512)

    mutating func set(_ offset: Int, _ length: Int, _ value: ArraySlice<UInt8>) {
        let n = min(length, value.count)
        bytes.replaceSubrange(offset..<offset + n, with: value.prefix(n))
    }

    /// Octal with a NUL terminator, or GNU base-256 when the value does not fit.
    mutating func setNumber(_ offset: Int, _ length: Int, _ value: Int64) {
        let octal = String(value, radix: 8)
        if octal.utf8.count <= length - 1 {
            let padded = String(repeating: "0", count: length - 1 - octal.utf8.count) + octal
            set(offset, length, Array(padded.utf8)[...])
            bytes[offset + length - 1] = 0
        } else {
            bytes[offset] = 0x80
            for i in 1..<length {
                let shift = (length - 1 - i) * 8
                bytes[offset + i] = shift >= 64 ? 0 : UInt8(truncatingIfNeeded: value >> shift)
            }
        }
    }

    /// The checksum field: six octal digits, NUL, space — computed with the field as spaces.
    mutating func sealChecksum() {
        bytes.replaceSubrange(148..<156, with: repeatElement(0x20, count: 8))
        let sum = bytes.reduce(0) { $0 + Int64($1) }
        setNumber(148, 7, sum)
        bytes[155] = 0x20
    }
}
