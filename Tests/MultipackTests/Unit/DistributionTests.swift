import Foundation
import Testing

@testable import MultipackKit

@Suite struct DistributionTests {
    @Test func buildpackTomlReadsStringsArraysAndTables() {
        let toml = BuildpackToml(
            """
            api = "0.2"
            # a comment
            [buildpack]
            id = "multipack/multipack"   # trailing comment
            version = "1.2.3"
            description = 'literal # not a comment'

            [publish.Ignore]
            files = [".ci/", "Tests/",
              "Package.swift", # inside
            ]

            [metadata.multipack]
            binary_url = "https://example.com/v{version}/multipack-{arch}"
            sha256_x86_64 = "abc"
            """)
        #expect(toml.string("", "api") == nil)
        #expect(toml.values["api"] == ["0.2"])
        #expect(toml.string("buildpack", "version") == "1.2.3")
        #expect(toml.string("buildpack", "description") == "literal # not a comment")
        #expect(toml.strings("publish.Ignore", "files") == [".ci/", "Tests/", "Package.swift"])
        #expect(toml.string("metadata.multipack", "binary_url") == "https://example.com/v{version}/multipack-{arch}")
        #expect(toml.string("metadata.multipack", "sha256_x86_64") == "abc")
    }

    @Test func publishIgnoreMatchesLikeGitignore() {
        let ignore = PublishIgnore(patterns: [".ci/", "Tests/", "Package.swift", "*.md.bak", "/docs/internal"])
        #expect(ignore.matches(".ci/run"))
        #expect(ignore.matches("Tests/MultipackTests/X.swift"))
        #expect(ignore.matches("Package.swift"))
        #expect(ignore.matches("deep/dir/Package.swift"))
        #expect(ignore.matches("notes/README.md.bak"))
        #expect(ignore.matches("docs/internal/a.txt"))
        #expect(!ignore.matches("bin/detect"))
        #expect(!ignore.matches("README.md"))
        #expect(!ignore.matches(".ci"))  // a file named like a directory pattern
        #expect(!ignore.matches("other/docs/internal/a.txt"))
    }

    @Test func sha256OfKnownInputs() throws {
        let temp = try TempDir("digest")
        try temp.write("abc", "abc")
        #expect(
            try sha256Hex(ofFile: temp.path + "/abc")
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        try temp.write("empty", "")
        #expect(
            try sha256Hex(ofFile: temp.path + "/empty")
                == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        // Longer than one read chunk.
        let big = [UInt8](repeating: 0x61, count: 200_000)
        _ = FileManager.default.createFile(atPath: temp.path + "/big", contents: Data(big))
        #expect(try sha256Hex(ofFile: temp.path + "/big") == (try sha256Hex(of: big)))
        let expected = try Shell.run("sha256sum", [temp.path + "/big"]).stdout.prefix(64)
        #expect(try sha256Hex(ofFile: temp.path + "/big") == String(expected))
        #expect(throws: FileError.self) { try sha256Hex(ofFile: temp.path + "/missing") }
    }

    @Test func stampRoundTrips() {
        let version = MultipackVersion(version: "1.2.3", commit: String(repeating: "a", count: 40) + "-dirty")
        let source = Packager.stampSource(version)
        #expect(
            source
                == "const char multipack_stamp[] = \"version=1.2.3\\ncommit=\(String(repeating: "a", count: 40))-dirty\\n\";\n"
        )
        let parsed = MultipackVersion(stamp: "version=1.2.3\ncommit=\(version.commit!)\n")
        #expect(parsed?.version == "1.2.3" && parsed?.commit == version.commit)
        #expect(parsed?.description == "1.2.3 (commit aaaaaaaaaaaa-dirty)")
        #expect(MultipackVersion(stamp: "") == nil)
    }

    @Test func checkoutBinaryReadsVersionAndCommitFromTheCheckout() throws {
        let result = try Shell.run(
            Repo.binary, ["--version"], environment: ["MULTIPACK_BUILDPACK_DIR": Repo.root, "PATH": "/usr/bin:/bin"])
        let commit = try Shell.gitOutput(["rev-parse", "HEAD"], in: Repo.root)
        let toml = BuildpackToml(try String(contentsOfFile: Repo.root + "/buildpack.toml", encoding: .utf8))
        #expect(result.stdout == "multipack \(toml.string("buildpack", "version")!) (commit \(commit.prefix(12)))\n")
    }
}
