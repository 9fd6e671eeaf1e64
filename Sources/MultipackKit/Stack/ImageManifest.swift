import FoundationEssentials
import Glibc

/// The media types multipack reads, OCI's and Docker's v2 (the Accept header asks for all four).
enum MediaType {
    static let ociIndex = "application/vnd.oci.image.index.v1+json"
    static let ociManifest = "application/vnd.oci.image.manifest.v1+json"
    static let dockerList = "application/vnd.docker.distribution.manifest.list.v2+json"
    static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
    static let accepted = [ociIndex, ociManifest, dockerList, dockerManifest]

    static func isIndex(_ type: String?) -> Bool { type == ociIndex || type == dockerList }
    static func isManifest(_ type: String?) -> Bool { type == ociManifest || type == dockerManifest }
}

/// A blob named by a manifest: its digest, its size, and what it is.
struct Descriptor: Codable, Sendable, Equatable {
    var mediaType: String?
    var digest: String
    var size: Int64
    var platform: Platform?
    var annotations: [String: String]?

    struct Platform: Codable, Sendable, Equatable {
        var architecture: String
        var os: String
        var variant: String?

        var shown: String { "\(os)/\(architecture)" + (variant.map { "/\($0)" } ?? "") }
    }

    /// Docker's attestations (SBOMs, provenance) hang in the index as `unknown/unknown` manifests.
    var isAttestation: Bool {
        annotations?["vnd.docker.reference.type"] == "attestation-manifest"
            || (platform?.os == "unknown" && platform?.architecture == "unknown")
    }
}

/// An index (OCI) or manifest list (Docker): one manifest per platform.
struct ImageIndex: Codable, Sendable {
    var schemaVersion: Int?
    var mediaType: String?
    var manifests: [Descriptor]
}

/// One platform's image: its config and its layers, bottom first.
struct ImageManifest: Codable, Sendable {
    var schemaVersion: Int?
    var mediaType: String?
    var config: Descriptor
    var layers: [Descriptor]
}

/// What the image's config says that a build can use.
public struct ImageConfig: Codable, Sendable, Equatable {
    public var architecture: String?
    public var os: String?
    public var config: Settings?

    public struct Settings: Codable, Sendable, Equatable {
        public var Env: [String]?
        public var User: String?
        public var WorkingDir: String?
    }

    /// The image's environment (`PATH=…`), as its config sets it.
    public var environment: [String] { config?.Env ?? [] }
}

/// The platform local builds run on: Heroku's dynos are linux/amd64.
enum ImagePlatform {
    static let os = "linux"
    static let architecture = "amd64"
    static var shown: String { "\(os)/\(architecture)" }

    /// This machine's architecture as `uname -m` says it.
    static var machine: String {
        var name = utsname()
        uname(&name)
        return withUnsafeBytes(of: name.machine) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// The one manifest of an index that dynos would run, attestations skipped; nil when there
    /// is none (the error names the platforms there are).
    static func choose(from index: ImageIndex) -> Descriptor? {
        index.manifests.first { entry in
            !entry.isAttestation && entry.platform?.os == os && entry.platform?.architecture == architecture
        }
    }
}

extension JSONDecoder {
    /// Decodes a registry's JSON, or nil when it is not that shape.
    static func registry<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) -> T? {
        try? JSONDecoder().decode(type, from: Data(bytes))
    }
}
