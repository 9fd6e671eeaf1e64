// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "multipack",
    products: [
        .executable(name: "multipack", targets: ["multipack"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // SHA-256 for sha256= pins and release binaries. 4.x builds on FoundationEssentials, so it
        // does not drag the whole of Foundation (and ICU) into the static binary as 3.x does.
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
    ],
    targets: [
        .systemLibrary(name: "CMultipackZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CMultipackLzma", pkgConfig: "liblzma", providers: [.apt(["liblzma-dev"])]),
        // libcurl's headers only: the library itself is loaded with dlopen on the first download,
        // so that detect/release never pay for loading its dependency tree.
        .systemLibrary(name: "CMultipackCurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        // Declarations Swift's Glibc module hides (posix_spawn's chdir action).
        .systemLibrary(name: "CMultipackSys"),
        .target(
            name: "MultipackKit",
            dependencies: [
                "CMultipackSys", "CMultipackZlib", "CMultipackLzma", "CMultipackCurl",
                .product(name: "Crypto", package: "swift-crypto"),
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
