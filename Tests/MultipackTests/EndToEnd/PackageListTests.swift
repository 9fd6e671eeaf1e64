import Foundation
import Testing

/// `.ci/debian-packages` is the one list of Debian packages the build and the tests need (SPEC §2,
/// §16): `.ci/run`, the README's install line and the release workflow read it. A build on a fresh
/// machine fails when it misses the package of a header a system-library target includes, so the
/// headers are asked for: every file the compiler reads for each `[system]` module's header, and
/// the package `dpkg -S` says it comes from.
@Suite struct PackageListTests {
    static let list = (try? String(contentsOfFile: Repo.root + "/.ci/debian-packages", encoding: .utf8)) ?? ""
    static var packages: Set<String> { Set(list.split(whereSeparator: \.isWhitespace).map(String.init)) }

    /// The headers the module maps of `Sources/*` name, for the `[system]` modules.
    static func systemHeaders() throws -> [String] {
        let sources = Repo.root + "/Sources"
        var headers: [String] = []
        for target in try FileManager.default.contentsOfDirectory(atPath: sources).sorted() {
            for map in [sources + "/\(target)/module.modulemap", sources + "/\(target)/include/module.modulemap"] {
                guard let text = try? String(contentsOfFile: map, encoding: .utf8), text.contains("[system]") else {
                    continue
                }
                let directory = (map as NSString).deletingLastPathComponent
                for match in text.matches(of: /header\s+"([^"]+)"/) { headers.append(directory + "/" + match.1) }
            }
        }
        return headers
    }

    /// `.ci/run` installs the list; its opening comment says why each package is there, and may
    /// not fall behind the list.
    @Test func ciRunNamesEveryPackageOfTheListWithItsReason() throws {
        let run = try String(contentsOfFile: Repo.root + "/.ci/run", encoding: .utf8)
        #expect(run.contains("$(cat .ci/debian-packages)"))
        let comment = run.split(separator: "\n").prefix { $0.hasPrefix("#") }.joined(separator: "\n")
        let named = Set(comment.split(whereSeparator: { !$0.isLetter && !$0.isNumber && $0 != "-" }).map(String.init))
        #expect(!Self.packages.isEmpty)
        for package in Self.packages.sorted() {
            #expect(named.contains(package), "`.ci/run` does not say why it installs \(package)")
        }
    }

    @Test func theListHoldsThePackageOfEveryHeaderTheCTargetsInclude() throws {
        let headers = try Self.systemHeaders()
        #expect(headers.count >= 5, "\(headers)")
        let resourceDir = try Shell.run("clang", ["-print-resource-dir"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        var included = Set<String>()
        for header in headers {
            // -M: every file the preprocessor opens for the header, its own includes and theirs.
            let result = try Shell.run("clang", ["-M", "-x", "c", header])
            #expect(result.status == 0, "\(header): \(result.stderr)")
            for word in result.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\\" }) {
                let path = String(word)
                guard path.hasPrefix("/"), path != header, !path.hasPrefix(Repo.root + "/") else { continue }
                // The compiler's own headers (stddef.h, stdarg.h) come with the toolchain.
                if path.hasPrefix(resourceDir + "/") { continue }
                included.insert(URL(fileURLWithPath: path).standardizedFileURL.path)
            }
        }
        #expect(included.contains { $0.hasSuffix("/yaml.h") }, "\(included.sorted())")
        #expect(included.contains { $0.hasSuffix("/curl/curl.h") })

        let owners = try Shell.run("dpkg", ["-S"] + included.sorted())
        var packageOf: [String: String] = [:]
        for line in owners.stdout.split(separator: "\n") {
            // "libyaml-dev:amd64: /usr/include/yaml.h"; a file two packages share lists both.
            guard let separator = line.range(of: ": /") else { continue }
            let path = "/" + line[separator.upperBound...]
            let names = line[..<separator.lowerBound].split(separator: ",").map {
                String($0.trimmingCharacters(in: .whitespaces).split(separator: ":")[0])
            }
            packageOf[path] = names.first { Self.packages.contains($0) } ?? names.first
        }
        let unowned = included.filter { packageOf[$0] == nil }.sorted()
        #expect(unowned.isEmpty, "headers no Debian package holds: \(unowned)")
        let missing = Set(packageOf.values).subtracting(Self.packages).sorted()
        #expect(missing.isEmpty, ".ci/debian-packages misses \(missing)")
        for name in ["libcurl4-openssl-dev", "zlib1g-dev", "liblzma-dev", "libyaml-dev", "libc6-dev"] {
            #expect(Set(packageOf.values).contains(name), "\(name) not found among \(Set(packageOf.values).sorted())")
        }
    }

    /// The list is read as it is by .ci/run, the workflow and the README's line: names only.
    @Test func theListIsOnePackageALineAndEveryReaderReadsIt() throws {
        let lines = Self.list.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        #expect(!lines.isEmpty && lines.allSatisfy { $0.wholeMatch(of: /[a-z0-9][a-z0-9.+-]*/) != nil }, "\(lines)")
        for name in ["docker-registry", "umoci", "skopeo", "busybox-static", "libzstd-dev", "libyaml-dev"] {
            #expect(Self.packages.contains(name), "\(name)")
        }
        let run = try String(contentsOfFile: Repo.root + "/.ci/run", encoding: .utf8)
        #expect(run.contains("$(cat .ci/debian-packages)"))
        let workflow = try String(contentsOfFile: Repo.root + "/.github/workflows/release.yml", encoding: .utf8)
        #expect(workflow.contains(".ci/run"))
        let readme = try String(contentsOfFile: Repo.root + "/README.md", encoding: .utf8)
        #expect(readme.contains("apt-get install -y -qq $(cat .ci/debian-packages)"))
    }
}
