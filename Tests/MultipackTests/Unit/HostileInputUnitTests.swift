import Foundation
import Testing

@testable import MultipackKit

/// The pieces behind #23's fixes, one input at a time.
@Suite struct HostileInputUnitTests {
    static func decodedLast(_ json: String) throws -> [String: String] {
        // The earlier occurrences are still there, renamed to names no app uses.
        try JSONDecoder().decode([String: String].self, from: Data(JSONLastKeyWins.rewrite(Array(json.utf8))))
            .filter { !$0.key.hasPrefix("\u{0}duplicate-") }
    }

    @Test func theLastOfTwoKeysWins() throws {
        #expect(try Self.decodedLast(#"{"a": "first", "b": "x", "a": "last"}"#) == ["a": "last", "b": "x"])
        // Two spellings of one key are one key; strings holding braces, quotes and colons are strings.
        #expect(try Self.decodedLast(#"{"a": "{\"a\": 1}", "\u0061": "last"}"#) == ["a": "last"])
        #expect(try Self.decodedLast(#"{"k:": "]}", "k:": "last", "x": "[\"{\"]"}"#) == ["k:": "last", "x": "[\"{\"]"])
        // Keys of different objects are not duplicates of each other.
        let nested = Array(#"{"a": {"a": "inner"}, "b": [{"a": 1}, {"a": 2}]}"#.utf8)
        #expect(JSONLastKeyWins.rewrite(nested) == nested)
        // Text that is not JSON comes back as it was, for the decoder to refuse.
        for broken in [#"{"a": "open"#, "}{", "[}", #"{"a": 1]"#] {
            #expect(JSONLastKeyWins.rewrite(Array(broken.utf8)) == Array(broken.utf8))
        }
    }

    /// 100,000 occurrences of one key: linear (each earlier one renamed as the next comes).
    @Test func manyDuplicatesStayLinear() throws {
        let json = "{" + (0..<100_000).map { "\"k\": \"\($0)\"" }.joined(separator: ",") + "}"
        let start = ContinuousClock.now
        #expect(try Self.decodedLast(json) == ["k": "99999"])
        #expect(start.duration(to: .now) < .seconds(30))
    }

    @Test func deepJSONDoesNotOverflow() {
        let deep = Array((String(repeating: "[", count: 200_000) + String(repeating: "]", count: 200_000)).utf8)
        #expect(JSONLastKeyWins.rewrite(deep) == deep)
    }

    @Test func credentialsLeaveTheURLForTheEnvironment() throws {
        let credentials = try #require(GitCredentials("https://deploy%40corp:s3cr%3At@Git.Example.com:8443/org/bp.git"))
        #expect(credentials.url == "https://Git.Example.com:8443/org/bp.git")
        #expect(credentials.origin == "https://git.example.com:8443")
        #expect(credentials.username == "deploy@corp")
        #expect(credentials.password == "s3cr:t")
        var environment = ["GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "user.name", "GIT_CONFIG_VALUE_0": "me"]
        credentials.configure(&environment)
        #expect(environment["GIT_CONFIG_COUNT"] == "3")
        #expect(environment["GIT_CONFIG_KEY_1"] == "credential.https://git.example.com:8443.helper")
        #expect(environment["GIT_CONFIG_VALUE_1"] == "")
        #expect(environment["GIT_CONFIG_VALUE_2"]?.hasPrefix("!f()") == true)
        #expect(!environment.values.contains { $0.contains("s3cr") && $0 != credentials.password })
        // A token alone is the user; no userinfo, ssh and scp-like references are left as they are.
        #expect(GitCredentials("https://t0ken@github.com/o/r")?.username == "t0ken")
        #expect(GitCredentials("https://t0ken@github.com/o/r")?.password == "")
        #expect(GitCredentials("https://github.com/o/r@v1") == nil)
        #expect(GitCredentials("ssh://git@github.com/o/r") == nil)
        #expect(GitCredentials("git@github.com:o/r.git") == nil)
        #expect(GitCredentials("https://u:%zz@h/r")?.password == "%zz")
        // A line break would add fields to the helper's answer: left to git, which refuses it.
        #expect(GitCredentials("https://u%0Ahost=evil:p@h/r") == nil)
        #expect(GitCredentials("https://u:p%0D%0Aprotocol=http@h/r") == nil)
    }

    @Test func aChildsOutputIsQuotedInPart() {
        #expect(ChildRunner.excerpt(Array("a: [b\n".utf8)) == "    a: [b")
        let long = Array((String(repeating: "x", count: 5000) + "\n").utf8)
        let shown = ChildRunner.excerpt(long)
        #expect(shown.count < 300 && shown.contains("(5001 bytes in all; the rest is not shown)"))
        let many = Array((0..<50).map { "line \($0)\n" }.joined().utf8)
        #expect(ChildRunner.excerpt(many).split(separator: "\n").count == 11)
    }
}

/// Keyed lists (a dotenv file, a Procfile, --env, --pass-env, app.json's env) of many keys.
@Suite struct ManyKeysTests {
    @Test func upsertingKeepsFirstPositionsAndLastValues() {
        let base: [(key: String, value: String)] = [("a", "1"), ("b", "2")]
        let merged = base.upserting([("c", "3"), ("a", "4"), ("c", "5")] as [(key: String, value: String)])
        #expect(merged.map(\.key) == ["a", "b", "c"] && merged.map(\.value) == ["4", "2", "5"])
    }

    /// 200,000 distinct keys: each was looked for among all the earlier ones (2·10¹⁰ comparisons,
    /// minutes); with an index of positions, a fraction of a second.
    @Test func manyDistinctKeysAreLinear() throws {
        let count = 200_000
        let text = (0..<count).map { "K\($0)=v\($0)\n" }.joined() + "K7=again\n"
        let start = ContinuousClock.now
        let pairs = try DotEnv.parse(text, file: "many.env")
        let merged = pairs.upserting(pairs.map { (key: $0.key, value: $0.value + "!") })
        #expect(start.duration(to: .now) < .seconds(30))
        #expect(pairs.count == count && pairs[7].value == "again" && merged.last?.value == "v\(count - 1)!")
    }
}
