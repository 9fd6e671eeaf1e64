import Foundation
import Testing

@testable import MultipackKit

/// The README's `.buildpacks` examples are what the parser accepts.
@Suite struct ReadmeExamplesTests {
    static let readme = (try? String(contentsOfFile: Repo.root + "/README.md", encoding: .utf8)) ?? ""

    @Test func theSampleBuildpacksFileParses() throws {
        let start = try #require(
            Self.readme.range(of: "list the app's buildpacks in `.buildpacks`, commit it and push:\n\n"))
        let block = Self.readme[start.upperBound...].prefix { _ in true }
            .split(separator: "\n", omittingEmptySubsequences: false)
            .prefix { $0.hasPrefix("    ") }
            .map { $0.dropFirst(4) }
            .joined(separator: "\n")
        let entries = try BuildpackList.parse(block)
        #expect(entries.count == 2)
        #expect(entries[0].reference == .git(url: "https://github.com/heroku/heroku-buildpack-nodejs.git", ref: "v250"))
        #expect(entries[1].reference == .registry(namespace: "heroku", name: "python"))
    }

    @Test func everyExampleInTheFormsTableParses() throws {
        let table = try #require(Self.readme.range(of: "| form | example |"))
        let rows = Self.readme[table.upperBound...].split(separator: "\n").prefix { $0.hasPrefix("|") }.dropFirst()
        var examples: [String] = []
        for row in rows {
            let cells = row.split(separator: "|")
            guard let cell = cells.last else { continue }
            // Every backticked example without an ellipsis (those stand for "anything").
            for (index, part) in cell.split(separator: "`", omittingEmptySubsequences: false).enumerated()
            where index % 2 == 1 && !part.contains("…") {
                examples.append(String(part))
            }
        }
        #expect(examples.count >= 8)
        for example in examples {
            #expect(throws: Never.self, "\(example)") { try BuildpackList.parse(example + "\n") }
        }
    }
}
