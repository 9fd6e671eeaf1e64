// libFuzzer entry for the text parsers: `.buildpacks` lines, bin/release YAML and URL masking.
// Built by scripts/fuzz/run-text.sh together with their sources; not part of the package.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTextParsers(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if let entries = try? BuildpackList.parse(text) {
        for entry in entries {
            // Every entry's masked form is itself stable under masking.
            precondition(Masking.url(entry.maskedText) == entry.maskedText)
        }
    }
    // The byte reader: a bad line is echoed cut and without raw control characters.
    do {
        _ = try BuildpackList.parse(bytes: Array(UnsafeBufferPointer(start: data, count: size)))
    } catch {
        precondition(error.text.count <= 201)
        precondition(!error.text.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7f })
    }
    if let release = try? Release.parse(text) {
        // What we print reads back the same.
        precondition((try? Release.parse(release.yaml)) == release)
    }
    _ = Masking.text(text)
    return 0
}
