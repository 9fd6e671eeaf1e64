import Testing

@testable import MultipackKit

@Suite struct DotEnvTests {
    @Test func readsCommentsQuotesExportAndEscapes() throws {
        let text =
            "\u{FEFF}# top\r\n\nexport A=1\nB = 'x # y'\nC=\"a\\tb\\\"c\\\\\"  # after\nD=bare value # note\nA=2\n"
        let pairs = try DotEnv.parse(text, file: "f.env")
        #expect(pairs.map(\.key) == ["A", "B", "C", "D"])
        #expect(pairs.map(\.value) == ["2", "x # y", "a\tb\"c\\", "bare value"])
    }

    @Test(arguments: [
        ("NOEQUALS\n", "line 1", "there is no `=`"),
        ("\n\n9X=1\n", "line 3", "is not a variable name"),
        ("A=\"open\n", "line 1", "the double quote is never closed"),
        ("A='x' y\n", "line 1", "there is text after the closing quote"),
    ])
    func aBadLineIsNamed(_ text: String, _ line: String, _ reason: String) {
        #expect {
            try DotEnv.parse(text, file: "f.env")
        } throws: { error in
            let message = (error as? MultipackError)?.headline ?? ""
            return message.contains("f.env \(line) ") && message.contains(reason)
        }
    }

    @Test func envFlagsWinOverTheFile() throws {
        let vars = try ConfigVarArguments(pairs: ["A=flag", "B=x=y"]).resolve()
        #expect(vars.map(\.key) == ["A", "B"] && vars.map(\.value) == ["flag", "x=y"])
        expectUsageError { _ = try ConfigVarArguments(pairs: ["=x"]).resolve() }
    }

    @Test func aThrowawayCacheAndANamedOneAreNotBothGiven() throws {
        var options = LocalBuildOptions(appDir: "/srv/app")
        options.noCache = true
        try options.validate()
        options.cacheDir = "/srv/cache"
        let error = expectUsageError { try options.validate() }
        #expect(error?.lines.first?.contains("--no-cache and --cache /srv/cache") == true)
    }
}

@Suite struct SlugIgnoreTests {
    @Test func anchoredUnanchoredDirectoriesAndComments() {
        let ignore = SlugIgnore("# c\n\n*.log\n/docs/*.md\nvendor/\nsub/x\n\\#literal\n")
        #expect(ignore.matches("a.log", isDirectory: false))
        #expect(ignore.matches("deep/er/a.log", isDirectory: false))
        #expect(ignore.matches("docs/a.md", isDirectory: false))
        #expect(!ignore.matches("other/docs/a.md", isDirectory: false))
        #expect(!ignore.matches("docs/deeper/a.md", isDirectory: false))
        #expect(ignore.matches("vendor", isDirectory: true))
        #expect(ignore.matches("lib/vendor", isDirectory: true))
        #expect(!ignore.matches("lib/vendor", isDirectory: false))
        #expect(ignore.matches("sub/x", isDirectory: false))
        #expect(!ignore.matches("a/sub/x", isDirectory: false))
        #expect(!ignore.matches("c", isDirectory: false))
        #expect(SlugIgnore("# only\n\n").isEmpty)
    }
}
