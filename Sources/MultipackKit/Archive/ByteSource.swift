/// A pull-based stream of bytes: the file, then each decompressor as a filter over it.
protocol ByteSource {
    /// Reads up to `max` bytes into `buffer[offset...]`, which has room for them. Returns 0 only at
    /// the end of the stream; a stream that ends early throws instead.
    mutating func read(into buffer: inout [UInt8], at offset: Int, max: Int) throws -> Int
}

/// How an archive is compressed, told by its first bytes rather than its name.
enum CompressionFormat: Equatable {
    case gzip, xz, none

    init(magic: some Collection<UInt8>) {
        if magic.starts(with: [0x1f, 0x8b]) {
            self = .gzip
        } else if magic.starts(with: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) {
            self = .xz
        } else {
            self = .none
        }
    }
}

/// Chunk size for every stage: large enough that per-call overhead vanishes behind zlib/liblzma,
/// small enough to keep the extractor's memory constant.
let archiveChunkSize = 256 * 1024

/// Bytes held in memory, for tests and the fuzzer.
struct MemorySource: ByteSource {
    var bytes: [UInt8]
    var position = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func read(into buffer: inout [UInt8], at offset: Int, max: Int) throws -> Int {
        let n = min(max, bytes.count - position)
        buffer[offset..<offset + n] = bytes[position..<position + n]
        position += n
        return n
    }
}

/// Reads `gzip` through zlib, member after member (`cat a.gz b.gz` is one valid stream).
struct GzipSource<Upstream: ByteSource>: ByteSource {
    private var upstream: Upstream
    private let inflater: ZlibInflater
    private var input: [UInt8]
    private var inputStart = 0
    private var inputEnd = 0
    private var upstreamEnded = false
    private var finished = false
    /// Whether the current member has produced or consumed anything: distinguishes a clean end
    /// after a member from one in the middle of it.
    private var inMember = false

    init(_ upstream: Upstream) throws {
        self.upstream = upstream
        self.inflater = try ZlibInflater()
        self.input = [UInt8](repeating: 0, count: archiveChunkSize)
    }

    mutating func read(into buffer: inout [UInt8], at offset: Int, max: Int) throws -> Int {
        while !finished {
            if inputStart == inputEnd && !upstreamEnded {
                inputStart = 0
                inputEnd = try upstream.read(into: &input, at: 0, max: input.count)
                upstreamEnded = inputEnd == 0
            }
            if inputStart == inputEnd && upstreamEnded {
                if inMember { throw ArchiveError.truncated("the gzip stream ends in the middle") }
                finished = true
                break
            }
            if !inMember {
                // Some tools pad a .gz with zero bytes after the last member; gzip ignores them.
                while inputStart < inputEnd && input[inputStart] == 0 { inputStart += 1 }
                if inputStart == inputEnd { continue }
            }
            let step = try inflater.inflate(
                input, inputStart..<inputEnd, into: &buffer, offset..<offset + max)
            inputStart += step.consumed
            if step.consumed > 0 || step.produced > 0 { inMember = true }
            if step.streamEnded {
                // Another member may follow; the next round either starts it or ends cleanly.
                inflater.reset()
                inMember = false
            }
            if step.produced > 0 { return step.produced }
        }
        return 0
    }
}

/// Reads `xz` through liblzma; concatenated streams are accepted like `xz -d` does.
struct XzSource<Upstream: ByteSource>: ByteSource {
    private var upstream: Upstream
    private let decoder: LzmaDecoder
    private var input: [UInt8]
    private var inputStart = 0
    private var inputEnd = 0
    private var upstreamEnded = false
    private var finished = false

    init(_ upstream: Upstream) throws {
        self.upstream = upstream
        self.decoder = try LzmaDecoder()
        self.input = [UInt8](repeating: 0, count: archiveChunkSize)
    }

    mutating func read(into buffer: inout [UInt8], at offset: Int, max: Int) throws -> Int {
        while !finished {
            if inputStart == inputEnd && !upstreamEnded {
                inputStart = 0
                inputEnd = try upstream.read(into: &input, at: 0, max: input.count)
                upstreamEnded = inputEnd == 0
            }
            let step = try decoder.decode(
                input, inputStart..<inputEnd, finish: upstreamEnded, into: &buffer, offset..<offset + max)
            inputStart += step.consumed
            if step.streamEnded { finished = true }
            if step.produced > 0 { return step.produced }
            if !step.streamEnded && upstreamEnded && step.consumed == 0 {
                throw ArchiveError.truncated("the xz stream ends in the middle")
            }
        }
        return 0
    }
}
