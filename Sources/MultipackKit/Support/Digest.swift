import Crypto
import Glibc

/// The SHA-256 of a file's contents as 64 lowercase hex digits, read in fixed-size chunks
/// (constant memory whatever the size). Used for `sha256=` pins and the packaged binary's digest.
public func sha256Hex(ofFile path: String) throws -> String {
    let file: ArchiveFile
    do {
        file = try ArchiveFile.openForReading(path)
    } catch {
        throw FileError(path: path, action: "read", errno: (error as? ArchiveIOError)?.code ?? EIO)
    }
    var hasher = SHA256()
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let count: Int
        do {
            count = try file.read(into: &buffer, at: 0, max: buffer.count)
        } catch {
            throw FileError(path: path, action: "read", errno: (error as? ArchiveIOError)?.code ?? EIO)
        }
        if count == 0 { break }
        buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[..<count])) }
    }
    return hexString(hasher.finalize())
}

/// The SHA-256 of some bytes as 64 lowercase hex digits.
public func sha256Hex(of bytes: some Sequence<UInt8>) -> String {
    hexString(SHA256.hash(data: Array(bytes)))
}

private func hexString(_ digest: SHA256.Digest) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var text: [UInt8] = []
    text.reserveCapacity(64)
    for byte in digest {
        text.append(digits[Int(byte >> 4)])
        text.append(digits[Int(byte & 0x0f)])
    }
    return String(decoding: text, as: UTF8.self)
}
