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
    var tree = PathTree()
    var count = 0
    while let entry = try reader.next(), count < 10_000 {
        count += 1
        var total: Int64 = 0
        try reader.readContent { _, range in total += Int64(range.count) }
        if entry.kind == .file { precondition(total == entry.size, "content length differs from the size") }
        let parts = try Extractor.components(of: entry.path, member: entry.path)
        precondition(!parts.contains("..") && !parts.contains(".") && !parts.contains(""))
        precondition(parts.count <= Extractor.maxComponents && entry.path.utf8.count <= Extractor.maxPathBytes)
        // The extractor's tree: every lookup and resolution must end, whatever the links.
        var node = PathTree.root
        for name in parts.dropLast() {
            node = tree.child(of: node, named: name) ?? tree.set(name, in: node, to: .directory)
        }
        guard let name = parts.last else { continue }
        if entry.kind == .symlink {
            if case .inside(let at) = tree.resolve(entry.linkTarget, from: PathTree.Position(node: node)) {
                precondition(at.node >= 0 && at.missing >= 0)
            }
            tree.set(name, in: node, to: .symlink(entry.linkTarget))
        } else {
            tree.set(name, in: node, to: entry.kind == .directory ? .directory : .file)
        }
    }
    for link in tree.symlinks { _ = tree.resolveSymlink(link) }
    try reader.finish(readingAtMost: 1 << 20)
}
