// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "multipack",
    products: [
        .executable(name: "multipack", targets: ["multipack"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2")
    ],
    targets: [
        .systemLibrary(name: "CMultipackZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CMultipackLzma", pkgConfig: "liblzma", providers: [.apt(["liblzma-dev"])]),
        // libcurl's headers only: the library itself is loaded with dlopen on the first download,
        // so that detect/release never pay for loading its dependency tree.
        .systemLibrary(name: "CMultipackCurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        // SHA-256 from libcrypto, also loaded with dlopen (no headers needed; see its shim.h).
        .systemLibrary(name: "CMultipackCrypto"),
        // libyaml for release YAML, loaded with dlopen too (yaml.h gives the types only).
        .systemLibrary(name: "CMultipackYaml", providers: [.apt(["libyaml-dev"])]),
        // libzstd for zstd image layers, loaded with dlopen too (no headers needed; see its shim.h).
        .systemLibrary(name: "CMultipackZstd"),
        // Spawning (clone/fork and exec), the direct sandbox's namespaces, its relay and init, and
        // the stop signals' handler: C that runs where Swift cannot (between fork and exec, in a
        // signal handler).
        .target(name: "CMultipackSpawn"),
        // The version and commit `multipack package` links into the release binary (a weak default
        // here, a strong definition in an object file given to the linker), so that packaging a new
        // commit only relinks.
        .target(name: "CMultipackStamp"),
        .target(
            name: "MultipackKit",
            dependencies: [
                "CMultipackSpawn", "CMultipackZlib", "CMultipackLzma", "CMultipackCurl", "CMultipackCrypto",
                "CMultipackYaml", "CMultipackStamp", "CMultipackZstd",
            ]
        ),
        .executableTarget(
            name: "multipack",
            dependencies: [
                "MultipackKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "MultipackTests",
            dependencies: ["MultipackKit", "multipack"]
        ),
    ]
)
