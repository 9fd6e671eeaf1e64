/// One member of a tar archive, after GNU long names and pax overrides have been applied.
struct TarEntry: Equatable {
    enum Kind: Equatable {
        case file, directory, symlink, hardLink
        /// Anything else (devices, fifos, sparse files, vendor types): the type flag as written.
        case other(UInt8)
    }

    var path: String
    var linkTarget: String
    var kind: Kind
    var mode: UInt32
    var size: Int64
    var mtime: Int64
    /// False when the path or link target, as stored, is not valid UTF-8 (SPEC §6 refuses it).
    var namesAreUTF8 = true
}

/// A streaming tar reader: ustar, GNU (`L`/`K` long names) and pax (`x` with `path`, `linkpath`,
/// `size`; `g` ignored). Memory is one chunk, whatever the archive's size.
struct TarReader<Source: ByteSource> {
    static var blockSize: Int { 512 }
    /// A long name or pax header larger than this is not a real one.
    static var maxMetadataSize: Int64 { 1 << 20 }

    private var source: Source
    private var buffer: [UInt8]
    private var start = 0
    private var end = 0
    private var sourceEnded = false
    /// Content bytes of the current member not read yet, then its padding to a block.
    private var remaining: Int64 = 0
    private var padding = 0
    private var current = ""
    private var finished = false
    /// Bytes of long names and pax headers seen: they cost decompression like content does.
    private(set) var metadataBytes: Int64 = 0
    /// Headers read, metadata headers included.
    private(set) var headerCount = 0

    /// Caps on what `next()` reads before it returns a member, so a stream of metadata headers
    /// cannot run on for ever.
    private let maxHeaders: Int
    private let maxMetadataBytes: Int64

    init(
        _ source: Source, chunkSize: Int = archiveChunkSize, maxHeaders: Int = .max, maxMetadataBytes: Int64 = .max
    ) {
        self.source = source
        self.maxHeaders = maxHeaders
        self.maxMetadataBytes = maxMetadataBytes
        self.buffer = [UInt8](repeating: 0, count: max(chunkSize, 4 * Self.blockSize))
    }

    /// The next member, or nil after the end-of-archive marker. Skips what is left of the previous
    /// member's content.
    mutating func next() throws -> TarEntry? {
        if finished { return nil }
        try skipContent()
        var longName: String?
        var longLink: String?
        var pax: [String: String] = [:]
        var paxNotUTF8: Set<String> = []
        var longNameIsUTF8 = true
        var longLinkIsUTF8 = true
        while true {
            guard try fill(Self.blockSize) else {
                if headerCount == 0 && start == end {
                    throw ArchiveError.truncated("it is empty")
                }
                throw ArchiveError.truncated(
                    headerCount == 0 ? "it ends inside the first tar header" : "the tar data ends after '\(current)'")
            }
            let header = buffer[start..<start + Self.blockSize]
            start += Self.blockSize
            if header.allSatisfy({ $0 == 0 }) {
                finished = true
                return nil
            }
            headerCount += 1
            let rawName = Self.string(header, 0, 100)
            try Self.verifyChecksum(header, name: rawName, first: headerCount == 1)
            let flag = header[header.startIndex + 156]
            let size = try Self.number(header, 124, 12, field: "size", name: rawName)
            switch flag {
            case UInt8(ascii: "L"), UInt8(ascii: "K"), UInt8(ascii: "x"), UInt8(ascii: "g"):
                guard size <= Self.maxMetadataSize else {
                    throw ArchiveError(
                        .corrupt, member: rawName,
                        "The archive is corrupt: the extended header '\(rawName)' claims \(size) bytes.")
                }
                metadataBytes += size
                guard headerCount <= maxHeaders, metadataBytes <= maxMetadataBytes else {
                    throw ArchiveError(
                        .limitExceeded, member: rawName,
                        "The archive holds more extended headers than its limits allow; refused at '\(rawName)'.")
                }
                let data = try readSmallContent(Int(size), name: rawName)
                if flag == UInt8(ascii: "L") {
                    longName = Self.string(data[...], 0, data.count, valid: &longNameIsUTF8)
                } else if flag == UInt8(ascii: "K") {
                    longLink = Self.string(data[...], 0, data.count, valid: &longLinkIsUTF8)
                } else if flag == UInt8(ascii: "x") {
                    try Self.parsePax(data, into: &pax, notUTF8: &paxNotUTF8, name: rawName)
                }
                continue
            default:
                break
            }
            var pathIsUTF8 = true
            var linkIsUTF8 = true
            var path = Self.string(header, 0, 100, valid: &pathIsUTF8)
            let isPosix = header[header.startIndex + 257..<header.startIndex + 263].elementsEqual("ustar\0".utf8)
            if isPosix {
                let prefix = Self.string(header, 345, 155, valid: &pathIsUTF8)
                if !prefix.isEmpty { path = prefix + "/" + path }
            }
            var link = Self.string(header, 157, 100, valid: &linkIsUTF8)
            if let longName { (path, pathIsUTF8) = (longName, longNameIsUTF8) }
            if let longLink { (link, linkIsUTF8) = (longLink, longLinkIsUTF8) }
            if let value = pax["path"] { (path, pathIsUTF8) = (value, !paxNotUTF8.contains("path")) }
            if let value = pax["linkpath"] { (link, linkIsUTF8) = (value, !paxNotUTF8.contains("linkpath")) }
            var contentSize = size
            if let value = pax["size"] {
                guard let parsed = Int64(value), parsed >= 0 else {
                    throw ArchiveError(
                        .corrupt, member: ArchiveError.cut(path),
                        "The archive is corrupt: member '\(ArchiveError.cut(path))' has a bad pax size.")
                }
                contentSize = parsed
            }
            let kind: TarEntry.Kind
            switch flag {
            case 0, UInt8(ascii: "0"), UInt8(ascii: "7"):
                // Old tars mark directories only by a trailing slash.
                kind = path.hasSuffix("/") ? .directory : .file
            case UInt8(ascii: "1"): kind = .hardLink
            case UInt8(ascii: "2"): kind = .symlink
            case UInt8(ascii: "5"): kind = .directory
            default: kind = .other(flag)
            }
            // Links and directories carry no data, whatever their size field says (ustar rule).
            switch kind {
            case .file, .other: remaining = contentSize
            case .directory, .symlink, .hardLink: remaining = 0
            }
            padding = Int((Int64(Self.blockSize) - remaining % Int64(Self.blockSize)) % Int64(Self.blockSize))
            current = ArchiveError.cut(path)
            let mode = try Self.number(header, 100, 8, field: "mode", name: current)
            let mtime = (try? Self.number(header, 136, 12, field: "mtime", name: current)) ?? 0
            return TarEntry(
                path: path, linkTarget: link, kind: kind, mode: UInt32(truncatingIfNeeded: mode),
                size: kind == .file ? contentSize : 0, mtime: mtime, namesAreUTF8: pathIsUTF8 && linkIsUTF8)
        }
    }

    /// Hands the current member's content to `body` in chunks (a buffer and the range of it that
    /// holds content), without copying it.
    mutating func readContent(_ body: ([UInt8], Range<Int>) throws -> Void) throws {
        while remaining > 0 {
            if start == end {
                start = 0
                end = 0
                guard try refill() else { throw truncatedInside() }
            }
            let n = Int(min(Int64(end - start), remaining))
            try body(buffer, start..<start + n)
            start += n
            remaining -= Int64(n)
        }
        try skipPadding()
    }

    /// After the end-of-archive marker, reads on to the end of the stream so the decompressor
    /// checks its trailer (a gzip CRC, an xz index). At most `limit` bytes are read.
    mutating func finish(readingAtMost limit: Int64) throws {
        var budget = limit - Int64(end - start)
        start = 0
        end = 0
        while budget > 0 {
            let n = try source.read(into: &buffer, at: 0, max: buffer.count)
            if n == 0 { break }
            budget -= Int64(n)
        }
    }

    private mutating func skipContent() throws {
        while remaining > 0 {
            if start == end {
                start = 0
                end = 0
                guard try refill() else { throw truncatedInside() }
            }
            let n = Int(min(Int64(end - start), remaining))
            start += n
            remaining -= Int64(n)
        }
        try skipPadding()
    }

    private mutating func skipPadding() throws {
        if padding > 0 {
            guard try fill(padding) else { throw truncatedInside() }
            start += padding
            padding = 0
        }
    }

    private func truncatedInside() -> ArchiveError {
        ArchiveError(
            .truncated, member: current, "The archive is truncated: the data of member '\(current)' is cut off.")
    }

    private mutating func readSmallContent(_ size: Int, name: String) throws -> [UInt8] {
        var data: [UInt8] = []
        data.reserveCapacity(size)
        remaining = Int64(size)
        padding = (Self.blockSize - size % Self.blockSize) % Self.blockSize
        current = ArchiveError.cut(name)
        try readContent { chunk, range in data.append(contentsOf: chunk[range]) }
        return data
    }

    /// Makes at least `count` bytes available at `start`; false if the stream ends first.
    private mutating func fill(_ count: Int) throws -> Bool {
        if end - start >= count { return true }
        if start > 0 {
            // Less than a block is left here: copying it out first keeps `buffer` unshared.
            let tail = Array(buffer[start..<end])
            buffer.replaceSubrange(0..<tail.count, with: tail)
            end -= start
            start = 0
        }
        while end - start < count {
            guard try refill() else { return false }
        }
        return true
    }

    private mutating func refill() throws -> Bool {
        if sourceEnded { return false }
        let n: Int
        do {
            n = try source.read(into: &buffer, at: end, max: buffer.count - end)
        } catch let error as ArchiveError where error.member == nil && !current.isEmpty {
            // The decompressor cannot know the member; say where in the archive it happened.
            let message = error.message.dropLast(error.message.hasSuffix(".") ? 1 : 0)
            throw ArchiveError(error.kind, member: current, "\(message), in member '\(current)'.")
        }
        if n == 0 { sourceEnded = true }
        end += n
        return n > 0
    }

    private static func string(_ block: ArraySlice<UInt8>, _ offset: Int, _ length: Int) -> String {
        var valid = true
        return string(block, offset, length, valid: &valid)
    }

    /// A NUL-terminated field; `valid` turns false if its bytes are not UTF-8 (they are shown
    /// with U+FFFD, never used as a name).
    private static func string(
        _ block: ArraySlice<UInt8>, _ offset: Int, _ length: Int, valid: inout Bool
    ) -> String {
        let field = block[block.startIndex + offset..<block.startIndex + offset + length]
        let bytes = field.prefix { $0 != 0 }
        return decode(bytes, valid: &valid)
    }

    private static func decode(_ bytes: ArraySlice<UInt8>, valid: inout Bool) -> String {
        if let text = String(validating: bytes, as: UTF8.self) { return text }
        valid = false
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func verifyChecksum(_ header: ArraySlice<UInt8>, name: String, first: Bool) throws {
        guard let stored = try? number(header, 148, 8, field: "checksum", name: name) else {
            throw ArchiveError(
                .corrupt, member: first ? nil : name,
                first
                    ? "The archive is corrupt: it is not a tar archive, compressed or not (its first header is invalid)."
                    : "The archive is corrupt: the tar header of member '\(name)' has a bad checksum.")
        }
        var unsigned: Int64 = 0
        var signed: Int64 = 0
        for (i, byte) in header.enumerated() {
            let value = (148..<156).contains(i) ? 0x20 : byte
            unsigned += Int64(value)
            signed += Int64(Int8(bitPattern: value))
        }
        guard stored == unsigned || stored == signed else {
            if first {
                throw ArchiveError(
                    .corrupt,
                    "The archive is corrupt: it is not a tar archive, compressed or not (its first header is invalid).")
            }
            throw ArchiveError(
                .corrupt, member: name, "The archive is corrupt: the tar header of member '\(name)' has a bad checksum."
            )
        }
    }

    /// An octal field, or GNU base-256 when the high bit of its first byte is set.
    private static func number(
        _ block: ArraySlice<UInt8>, _ offset: Int, _ length: Int, field: String, name: String
    ) throws -> Int64 {
        let bytes = block[block.startIndex + offset..<block.startIndex + offset + length]
        let bad = ArchiveError(
            .corrupt, member: name, "The archive is corrupt: the \(field) field of member '\(name)' is not a number.")
        if let first = bytes.first, first & 0x80 != 0 {
            let rest = bytes.dropFirst()
            guard first == 0x80, rest.dropLast(min(rest.count, 8)).allSatisfy({ $0 == 0 }) else { throw bad }
            let value = rest.suffix(8).reduce(Int64(0)) { ($0 << 8) | Int64($1) }
            guard value >= 0 else { throw bad }
            return value
        }
        var value: Int64 = 0
        var digits = bytes.drop { $0 == 0x20 || $0 == 0 }
        digits = digits.prefix { $0 != 0x20 && $0 != 0 }
        for byte in digits {
            guard (0x30...0x37).contains(byte), value < Int64.max >> 3 else { throw bad }
            value = value << 3 | Int64(byte - 0x30)
        }
        return value
    }

    /// pax records: "LENGTH KEY=VALUE\n", LENGTH counting the whole record.
    private static func parsePax(
        _ data: [UInt8], into values: inout [String: String], notUTF8: inout Set<String>, name: String
    ) throws {
        let bad = ArchiveError(
            .corrupt, member: name, "The archive is corrupt: the pax header '\(name)' is malformed.")
        var i = 0
        while i < data.count {
            if data[i] == 0 { break }
            var length = 0
            var j = i
            while j < data.count, (0x30...0x39).contains(data[j]), length < 1 << 24 {
                length = length * 10 + Int(data[j] - 0x30)
                j += 1
            }
            guard j < data.count, data[j] == 0x20, length > j - i + 1, i + length <= data.count,
                data[i + length - 1] == 0x0a
            else { throw bad }
            let record = data[(j + 1)..<(i + length - 1)]
            guard let eq = record.firstIndex(of: UInt8(ascii: "=")) else { throw bad }
            let key = String(decoding: record[..<eq], as: UTF8.self)
            var valid = true
            values[key] = decode(record[(eq + 1)...], valid: &valid)
            if valid { notUTF8.remove(key) } else { notUTF8.insert(key) }
            i += length
        }
    }
}
