import Crypto
import Glibc

/// The SHA-256 of a file as 64 lowercase hex digits, read in 256 KiB chunks (constant memory).
public func sha256Hex(ofFile path: String) throws -> String {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else { throw FileError(path: path, action: "read", errno: errno) }
    defer { close(descriptor) }
    var hasher = SHA256()
    var buffer = [UInt8](repeating: 0, count: 256 * 1024)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR { continue }
        guard count >= 0 else { throw FileError(path: path, action: "read", errno: errno) }
        if count == 0 { break }
        buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
    }
    return hasher.finalize().map { String($0, radix: 16).leftPadded(to: 2) }.joined()
}
