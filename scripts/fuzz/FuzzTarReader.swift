// libFuzzer entry point for the tar reader and the decompressors in front of it. Compiled into
// the Archive sources' module by run.sh, so it sees their internal types.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTarReader(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    do {
        switch CompressionFormat(magic: bytes.prefix(6)) {
        case .gzip: try readAll(TarReader(try GzipSource(MemorySource(bytes)), chunkSize: 4096))
        case .xz: try readAll(TarReader(try XzSource(MemorySource(bytes)), chunkSize: 4096))
        case .none: try readAll(TarReader(MemorySource(bytes), chunkSize: 4096))
        }
    } catch is ArchiveError {
        // Refusing bad input is the expected outcome; only crashes and hangs are findings.
    } catch {
        fatalError("unexpected error type: \(error)")
    }
    return 0
}

private func readAll<S: ByteSource>(_ reader: TarReader<S>) throws {
    var reader = reader
    var symlinks: [String: String] = [:]
    var count = 0
    while let entry = try reader.next(), count < 10_000 {
        count += 1
        var total: Int64 = 0
        try reader.readContent { _, range in total += Int64(range.count) }
        if entry.kind == .file { precondition(total == entry.size, "content length differs from the size") }
        let parts = try Extractor.components(of: entry.path, member: entry.path)
        precondition(!parts.contains("..") && !parts.contains(".") && !parts.contains(""))
        if entry.kind == .symlink,
            let resolved = Extractor.resolve(entry.linkTarget, from: Array(parts.dropLast()), symlinks: symlinks)
        {
            precondition(!resolved.contains(".."))
            symlinks[parts.joined(separator: "/")] = entry.linkTarget
        }
    }
    try reader.finish(readingAtMost: 1 << 20)
}
