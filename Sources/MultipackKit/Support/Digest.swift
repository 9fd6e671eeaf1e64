import CMultipackCrypto
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
    var hasher = try SHA256Hasher()
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let count: Int
        do {
            count = try file.read(into: &buffer, at: 0, max: buffer.count)
        } catch {
            throw FileError(path: path, action: "read", errno: (error as? ArchiveIOError)?.code ?? EIO)
        }
        if count == 0 { break }
        try hasher.update(buffer[..<count])
    }
    return try hasher.finish()
}

/// The SHA-256 of some bytes as 64 lowercase hex digits.
public func sha256Hex(of bytes: [UInt8]) throws -> String {
    var hasher = try SHA256Hasher()
    try hasher.update(bytes[...])
    return try hasher.finish()
}

/// libcrypto could not be loaded, or a digest call failed.
public struct DigestError: Error, CustomStringConvertible {
    public var description: String
}

/// libcrypto's entry points, loaded with dlopen on the first digest.
private struct CryptoLibrary: @unchecked Sendable {
    // Filled once by the loader and never changed, so sharing it between threads is safe.
    let api: UnsafePointer<multipack_crypto>

    static let shared: Result<CryptoLibrary, DigestError> = {
        var error = [CChar](repeating: 0, count: 512)
        let names = ["libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so"]
        let cNames = names.map { strdup($0) }
        defer { cNames.forEach { free($0) } }
        let api = cNames.map { UnsafePointer($0) }.withUnsafeBufferPointer { list in
            multipack_crypto_load(list.baseAddress, list.count, &error, error.count)
        }
        guard let api else {
            let reason = String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            return .failure(
                DigestError(
                    description: "SHA-256 and SHA-1 need OpenSSL's libcrypto, which could not be loaded: \(reason)"))
        }
        return .success(CryptoLibrary(api: api))
    }()
}

/// One streaming SHA-256 computation.
private struct SHA256Hasher {
    private let library: CryptoLibrary
    private var context: OpaquePointer?

    init() throws {
        library = try CryptoLibrary.shared.get()
        context = multipack_sha256_begin(library.api)
        guard context != nil else { throw DigestError(description: "libcrypto could not start a SHA-256 digest") }
    }

    mutating func update(_ bytes: ArraySlice<UInt8>) throws {
        let ok = bytes.withUnsafeBytes { multipack_sha256_update(library.api, context, $0.baseAddress, $0.count) }
        guard ok == 1 else { throw DigestError(description: "libcrypto failed while computing a SHA-256 digest") }
    }

    /// The digest as hex. The hasher is spent afterwards.
    mutating func finish() throws -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        let ok = multipack_sha256_end(library.api, context, &digest)
        context = nil
        guard ok == 1 else { throw DigestError(description: "libcrypto failed while finishing a SHA-256 digest") }
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: digest.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0f)]] }, as: UTF8.self)
    }
}

/// One streaming SHA-1 computation, for git's object names (a checkout is verified against its
/// commit with them, SPEC §5). Raw 20-byte digests: they are compared with a tree's entries.
struct SHA1Hasher {
    private let library: CryptoLibrary
    private var context: OpaquePointer?

    init() throws {
        library = try CryptoLibrary.shared.get()
        context = multipack_digest_begin(library.api, 1)
        guard context != nil else { throw DigestError(description: "libcrypto could not start a SHA-1 digest") }
    }

    mutating func update(_ bytes: UnsafeRawBufferPointer) throws {
        guard multipack_sha256_update(library.api, context, bytes.baseAddress, bytes.count) == 1 else {
            throw DigestError(description: "libcrypto failed while computing a SHA-1 digest")
        }
    }

    mutating func update(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try update($0) }
    }

    /// The 20 bytes of the digest. The hasher is spent afterwards.
    mutating func finish() throws -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 64)
        let ok = multipack_digest_end(library.api, context, &digest, 20)
        context = nil
        guard ok == 1 else { throw DigestError(description: "libcrypto failed while finishing a SHA-1 digest") }
        return Array(digest.prefix(20))
    }

    /// git's name of an object: the SHA-1 of `<type> <size>\0` and its content.
    static func objectName(_ type: String, _ content: [UInt8]) throws -> [UInt8] {
        var hasher = try SHA1Hasher()
        try hasher.update(Array("\(type) \(content.count)\0".utf8))
        try hasher.update(content)
        return try hasher.finish()
    }
}
