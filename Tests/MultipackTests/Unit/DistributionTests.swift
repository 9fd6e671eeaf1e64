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

    /// What `multipack package` writes into the archive's buildpack.toml and release.sh commits.
    @Test func buildpackTomlSettingReplacesOrAddsOneLine() {
        let text = """
            [buildpack]
            id = "multipack/multipack"
            version = "0.1.0"   # the release

            # What the shims download.
            [metadata.multipack]
            binary_url = "https://example.com/v{version}/multipack-{arch}"

            """
        let versioned = BuildpackToml.setting("buildpack", "version", to: "1.2.0", in: text)
        #expect(versioned == text.replacing("version = \"0.1.0\"   # the release", with: "version = \"1.2.0\""))
        let digest = String(repeating: "ab", count: 32)
        let added = BuildpackToml.setting("metadata.multipack", "sha256_x86_64", to: digest, in: versioned)
        #expect(added.hasSuffix("multipack-{arch}\"\nsha256_x86_64 = \"\(digest)\"\n"), "\(added)")
        #expect(BuildpackToml(added).string("metadata.multipack", "sha256_x86_64") == digest)
        #expect(BuildpackToml(added).string("buildpack", "id") == "multipack/multipack")
        // Again: the line is replaced, not added twice.
        let again = BuildpackToml.setting("metadata.multipack", "sha256_x86_64", to: "cd", in: added)
        #expect(again.components(separatedBy: "sha256_x86_64").count == 2)
        // A table that is not there is added at the end; a quote in the value stays a string.
        let table = BuildpackToml.setting("new.table", "key", to: "a\"b", in: "x = \"1\"\n")
        #expect(table == "x = \"1\"\n\n[new.table]\nkey = \"a\\\"b\"\n")
        #expect(BuildpackToml(table).string("new.table", "key") == "a\"b")
    }

    @Test func versionsForARelease() {
        for good in ["0.1.0", "1.22.333", "1.2.0-rc.1", "1.2.0+build.5"] {
            #expect(Packager.isVersion(good), "\(good)")
        }
        for bad in ["1.2", "v1.2.0", "1.2.0.0", "", "1..0", "a.b.c", "1.2.0-", "1.2.0 ", "１.2.0"] {
            #expect(!Packager.isVersion(bad), "\(bad)")
        }
    }

    /// bin/detect's textual test, as the binary's detect (which local builds run) makes it.
    @Test func detectFindsABuildpacksKeyInTheText() {
        func key(_ text: String) -> Bool { Detect.hasBuildpacksKey(ArraySlice(Array(text.utf8))) }
        #expect(key("{\"buildpacks\": []}"))
        #expect(key("{\"name\": \"x\",\n  \"buildpacks\"\t\r\n :[{}]}"))
        #expect(!key("{\"name\": \"buildpacks\"}"))
        #expect(!key("{\"buildpack\": []}"))
        #expect(!key("\"buildpacks\""))
        #expect(!key(""))
        #expect(key("\"\"buildpacks\":"))
    }

    @Test func theShimProtocolIsCheckedAndAnUnknownOneNamesTheRelease() {
        let version = MultipackVersion(version: "1.0.0", commit: nil)
        #expect(ShimProtocol.problem([:], version: version) == nil)
        #expect(ShimProtocol.problem(["MULTIPACK_SHIM_PROTOCOL": "1@0.1.0"], version: version) == nil)
        #expect(ShimProtocol.problem(["MULTIPACK_SHIM_PROTOCOL": "1"], version: version) == nil)
        let newer = ShimProtocol.problem(["MULTIPACK_SHIM_PROTOCOL": "2@1.4.0"], version: version)
        #expect(newer?.headline.contains("shim protocol 2, which multipack 1.0.0 (commit unknown)") == true)
        #expect(newer?.hint?.contains("Use multipack 1.4.0 or later") == true)
        #expect(newer?.hint?.contains("https://github.com/multipack/multipack#v1.4.0") == true)
        let garbage = ShimProtocol.problem(["MULTIPACK_SHIM_PROTOCOL": "x"], version: version)
        #expect(garbage?.hint?.contains("from the same release as the scripts") == true)
        #expect(ShimProtocol.isShim(["MULTIPACK_SHIM_PROTOCOL": "1"]) && !ShimProtocol.isShim([:]))
    }

    /// Every `Try it:` and hint line names multipack as it can be run (SPEC §16).
    @Test func theCommandIsNamedAsItCanBeRun() throws {
        let temp = try TempDir("command-name")
        let me = LocalBuild.executablePath()
        // Not on PATH: the path it was started with (quoted for a shell when it needs it).
        #expect(
            CommandName.resolve(argument0: "./x/multipack", environment: ["PATH": "/nonexistent"]) == "./x/multipack")
        #expect(
            CommandName.resolve(argument0: "/a b/multipack", environment: ["PATH": "/nonexistent"])
                == "'/a b/multipack'")
        #expect(CommandName.resolve(argument0: "multipack", environment: ["PATH": "/nonexistent"]) == me)
        // On PATH as this very binary: its name.
        try FileManager.default.createSymbolicLink(atPath: temp.path + "/multipack", withDestinationPath: me)
        #expect(CommandName.resolve(argument0: "/elsewhere/multipack", environment: ["PATH": temp.path]) == "multipack")
        // Another multipack on PATH is not this one: the path again.
        let other = try TempDir("command-name-other")
        try other.write("multipack", "#!/bin/sh\n", executable: true)
        #expect(CommandName.resolve(argument0: "/x/multipack", environment: ["PATH": other.path]) == "/x/multipack")
        // The shims' (Heroku: the user runs multipack on their machine) and a local build's verbs.
        #expect(CommandName.resolve(argument0: "/x/m", environment: ["MULTIPACK_SHIM_PROTOCOL": "1"]) == "multipack")
        #expect(CommandName.resolve(argument0: "/x/m", environment: ["MULTIPACK_COMMAND_NAME": "./mp"]) == "./mp")
    }
}
