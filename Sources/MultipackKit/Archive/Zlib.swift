import CMultipackZlib

// The only file that talks to zlib. The z_stream lives at a fixed heap address for its whole
// life, because zlib keeps a pointer back to it in its internal state.

/// One step of a (de)compressor: how much input it took and how much output it made.
struct CodecStep {
    var consumed: Int
    var produced: Int
    var streamEnded: Bool
}

final class ZlibInflater {
    private let stream: UnsafeMutablePointer<z_stream>

    init() throws {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        // 15 + 32: the largest window, and gzip or zlib header detected automatically.
        let status = multipack_inflateInit2(stream, 15 + 32)
        guard status == Z_OK else {
            stream.deallocate()
            throw ArchiveError(.system, "Could not start the gzip decompressor (zlib error \(status)).")
        }
    }

    deinit {
        inflateEnd(stream)
        stream.deallocate()
    }

    func reset() { inflateReset(stream) }

    func inflate(
        _ input: [UInt8], _ inRange: Range<Int>, into output: inout [UInt8], _ outRange: Range<Int>
    ) throws -> CodecStep {
        let status = input.withUnsafeBytes { inBytes in
            output.withUnsafeMutableBytes { outBytes in
                stream.pointee.next_in = UnsafeMutablePointer(
                    mutating: inBytes.baseAddress!.assumingMemoryBound(to: Bytef.self) + inRange.lowerBound)
                stream.pointee.avail_in = UInt32(inRange.count)
                stream.pointee.next_out =
                    outBytes.baseAddress!.assumingMemoryBound(to: Bytef.self) + outRange.lowerBound
                stream.pointee.avail_out = UInt32(outRange.count)
                return CMultipackZlib.inflate(stream, Z_NO_FLUSH)
            }
        }
        let step = CodecStep(
            consumed: inRange.count - Int(stream.pointee.avail_in),
            produced: outRange.count - Int(stream.pointee.avail_out),
            streamEnded: status == Z_STREAM_END)
        stream.pointee.next_in = nil
        stream.pointee.next_out = nil
        switch status {
        case Z_OK, Z_STREAM_END, Z_BUF_ERROR:
            return step
        case Z_MEM_ERROR:
            throw ArchiveError(.system, "Could not decompress the archive: zlib ran out of memory.")
        default:
            throw ArchiveError(.corrupt, "The archive holds corrupt gzip data (\(message ?? "zlib error \(status)")).")
        }
    }

    private var message: String? { stream.pointee.msg.map { String(cString: $0) } }
}

final class ZlibDeflater {
    private let stream: UnsafeMutablePointer<z_stream>

    /// `level` 0–9; the gzip header carries no name and mtime 0, so output is reproducible.
    init(level: Int) throws {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        // 15 + 16: the largest window, with a gzip header and trailer.
        let status = multipack_deflateInit2(stream, Int32(level), 15 + 16)
        guard status == Z_OK else {
            stream.deallocate()
            throw ArchiveError(.system, "Could not start the gzip compressor (zlib error \(status)).")
        }
    }

    deinit {
        deflateEnd(stream)
        stream.deallocate()
    }

    /// Compresses `input[inRange]` (with `finish`, also flushes the trailer) into `output`.
    func deflate(
        _ input: [UInt8], _ inRange: Range<Int>, finish: Bool, into output: inout [UInt8], _ outRange: Range<Int>
    ) throws -> CodecStep {
        let status = input.withUnsafeBytes { inBytes in
            output.withUnsafeMutableBytes { outBytes in
                let base = inBytes.baseAddress.map { $0.assumingMemoryBound(to: Bytef.self) }
                stream.pointee.next_in = base.map { UnsafeMutablePointer(mutating: $0 + inRange.lowerBound) }
                stream.pointee.avail_in = UInt32(inRange.count)
                stream.pointee.next_out =
                    outBytes.baseAddress!.assumingMemoryBound(to: Bytef.self) + outRange.lowerBound
                stream.pointee.avail_out = UInt32(outRange.count)
                return CMultipackZlib.deflate(stream, finish ? Z_FINISH : Z_NO_FLUSH)
            }
        }
        let step = CodecStep(
            consumed: inRange.count - Int(stream.pointee.avail_in),
            produced: outRange.count - Int(stream.pointee.avail_out),
            streamEnded: status == Z_STREAM_END)
        stream.pointee.next_in = nil
        stream.pointee.next_out = nil
        guard status == Z_OK || status == Z_STREAM_END || status == Z_BUF_ERROR else {
            throw ArchiveError(.system, "Could not compress the archive (zlib error \(status)).")
        }
        return step
    }
}
