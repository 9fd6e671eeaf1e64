import CMultipackLzma

// The only file that talks to liblzma. Like z_stream, lzma_stream stays at one heap address.

final class LzmaDecoder {
    private let stream: UnsafeMutablePointer<lzma_stream>

    /// Bounds liblzma's memory: `xz -9` needs 65 MiB to decode, so this only stops hostile headers.
    static let memoryLimit: UInt64 = 256 << 20

    init() throws {
        stream = .allocate(capacity: 1)
        stream.initialize(to: lzma_stream())  // all zeroes is LZMA_STREAM_INIT
        let status = lzma_stream_decoder(stream, Self.memoryLimit, multipack_lzma_concatenated())
        guard status == LZMA_OK else {
            stream.deallocate()
            throw ArchiveError(.system, "Could not start the xz decompressor (liblzma error \(status.rawValue)).")
        }
    }

    deinit {
        lzma_end(stream)
        stream.deallocate()
    }

    /// Decodes `input[inRange]` into `output[outRange]`. `finish` says no more input will come.
    func decode(
        _ input: [UInt8], _ inRange: Range<Int>, finish: Bool, into output: inout [UInt8], _ outRange: Range<Int>
    ) throws -> CodecStep {
        let status = input.withUnsafeBytes { inBytes in
            output.withUnsafeMutableBytes { outBytes in
                stream.pointee.next_in =
                    inBytes.baseAddress!.assumingMemoryBound(to: UInt8.self) + inRange.lowerBound
                stream.pointee.avail_in = inRange.count
                stream.pointee.next_out =
                    outBytes.baseAddress!.assumingMemoryBound(to: UInt8.self) + outRange.lowerBound
                stream.pointee.avail_out = outRange.count
                return lzma_code(stream, finish ? LZMA_FINISH : LZMA_RUN)
            }
        }
        let step = CodecStep(
            consumed: inRange.count - stream.pointee.avail_in,
            produced: outRange.count - stream.pointee.avail_out,
            streamEnded: status == LZMA_STREAM_END)
        stream.pointee.next_in = nil
        stream.pointee.next_out = nil
        switch status {
        case LZMA_OK, LZMA_STREAM_END:
            return step
        case LZMA_BUF_ERROR:
            if finish { throw ArchiveError.truncated("the xz stream ends in the middle") }
            return step
        case LZMA_MEM_ERROR:
            throw ArchiveError(.system, "Could not decompress the archive: liblzma ran out of memory.")
        case LZMA_MEMLIMIT_ERROR:
            throw ArchiveError(.corrupt, "The archive's xz data asks for more than 256 MiB of memory to decode.")
        default:
            throw ArchiveError(.corrupt, "The archive holds corrupt xz data (liblzma error \(status.rawValue)).")
        }
    }
}
