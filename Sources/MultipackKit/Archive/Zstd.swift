import CMultipackZstd
import Glibc

// The only file that talks to libzstd, which is loaded on the first zstd layer.

/// libzstd's entry points.
private struct ZstdLibrary: @unchecked Sendable {
    // Filled once by the loader and never changed, so sharing it between threads is safe.
    let api: UnsafePointer<multipack_zstd>

    static let shared: Result<ZstdLibrary, ArchiveError> = {
        var error = [CChar](repeating: 0, count: 512)
        let names = ["libzstd.so.1", "libzstd.so"]
        let cNames = names.map { strdup($0) }
        defer { cNames.forEach { free($0) } }
        let api = cNames.map { UnsafePointer($0) }.withUnsafeBufferPointer { list in
            multipack_zstd_load(list.baseAddress, list.count, &error, error.count)
        }
        guard let api else {
            let reason = String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            return .failure(
                ArchiveError(
                    .system,
                    "This layer is compressed with zstd, and libzstd could not be loaded (\(reason)); "
                        + "install it (apt-get install libzstd1)."))
        }
        return .success(ZstdLibrary(api: api))
    }()
}

/// One zstd decompression context, at one heap address for its whole life.
final class ZstdDecoder {
    private let api: UnsafePointer<multipack_zstd>
    private let context: OpaquePointer

    init() throws {
        api = try ZstdLibrary.shared.get().api
        guard let context = multipack_zstd_create(api) else {
            throw ArchiveError(.system, "Could not start the zstd decompressor: libzstd ran out of memory.")
        }
        self.context = context
    }

    deinit { multipack_zstd_free(api, context) }

    /// Decodes `input[inRange]` into `output[outRange]`; `streamEnded` says a frame is complete
    /// and flushed (another may follow).
    func decode(
        _ input: [UInt8], _ inRange: Range<Int>, into output: inout [UInt8], _ outRange: Range<Int>
    ) throws -> CodecStep {
        var inBuffer = multipack_zstd_in()
        var outBuffer = multipack_zstd_out()
        let hint = input.withUnsafeBytes { inBytes in
            output.withUnsafeMutableBytes { outBytes in
                inBuffer = multipack_zstd_in(
                    src: inBytes.baseAddress! + inRange.lowerBound, size: inRange.count, pos: 0)
                outBuffer = multipack_zstd_out(
                    dst: outBytes.baseAddress! + outRange.lowerBound, size: outRange.count, pos: 0)
                return multipack_zstd_decompress(api, context, &outBuffer, &inBuffer)
            }
        }
        if multipack_zstd_is_error(api, hint) != 0 {
            let name = String(cString: multipack_zstd_error_name(api, hint))
            throw ArchiveError(.corrupt, "The archive holds corrupt zstd data (\(name)).")
        }
        return CodecStep(consumed: inBuffer.pos, produced: outBuffer.pos, streamEnded: hint == 0)
    }
}

/// Reads `zstd` through libzstd; concatenated frames are accepted like `zstd -d` does.
struct ZstdSource<Upstream: ByteSource>: ByteSource {
    private var upstream: Upstream
    private let decoder: ZstdDecoder
    private var input: [UInt8]
    private var inputStart = 0
    private var inputEnd = 0
    private var upstreamEnded = false
    /// A frame has begun and is not complete yet (or output is still held inside libzstd).
    private var inFrame = false

    init(_ upstream: Upstream) throws {
        self.upstream = upstream
        self.decoder = try ZstdDecoder()
        self.input = [UInt8](repeating: 0, count: archiveChunkSize)
    }

    mutating func read(into buffer: inout [UInt8], at offset: Int, max: Int) throws -> Int {
        while true {
            if inputStart == inputEnd && !upstreamEnded {
                inputStart = 0
                inputEnd = try upstream.read(into: &input, at: 0, max: input.count)
                upstreamEnded = inputEnd == 0
            }
            if inputStart == inputEnd && upstreamEnded && !inFrame { return 0 }
            let step = try decoder.decode(input, inputStart..<inputEnd, into: &buffer, offset..<offset + max)
            inputStart += step.consumed
            inFrame = !step.streamEnded
            if step.produced > 0 { return step.produced }
            if inputStart == inputEnd && upstreamEnded && step.consumed == 0 && inFrame {
                throw ArchiveError.truncated("the zstd stream ends in the middle")
            }
        }
    }
}
