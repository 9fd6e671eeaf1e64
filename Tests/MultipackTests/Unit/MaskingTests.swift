import Testing

@testable import MultipackKit

@Suite struct MaskingTests {
    @Test func userinfoAndQueryValuesAreMasked() {
        #expect(
            Masking.url("https://user:tok3n@example.com/a.tgz?token=abc&x=1#v1")
                == "https://***@example.com/a.tgz?token=***&x=***#v1")
        #expect(Masking.url("https://example.com/repo.git#main") == "https://example.com/repo.git#main")
        #expect(Masking.url("git@github.com:org/repo.git") == "git@github.com:org/repo.git")
    }

    @Test func urlsInsideTextAreMasked() {
        let line = "fatal: could not read from 'https://bob:s3cret@h.example/r.git?t=zz' (exit 128)"
        let masked = Masking.text(line)
        #expect(!masked.contains("s3cret"))
        #expect(!masked.contains("zz"))
        #expect(masked == "fatal: could not read from 'https://***@h.example/r.git?t=***' (exit 128)")
    }

    /// The separator is found byte by byte: colons that start no `://`, a separator at the very
    /// end, and multi-byte text around a URL leave the rest as it was.
    @Test func schemeSeparatorsAmongColonsAndWideCharacters() {
        #expect(Masking.text("a:b c:/d e:") == "a:b c:/d e:")
        #expect(Masking.text("ends with ://") == "ends with ://")
        #expect(Masking.text("été ☃ https://u:p@h.example/x?k=v ☃") == "été ☃ https://***@h.example/x?k=*** ☃")
        #expect(Masking.url("x:y:https://u:p@h.example") == "x:y:https://***@h.example")
        #expect(Masking.schemeSeparator(in: "::://"[...]).map { "::://"[$0] } == "://")
    }

    /// An image pinned by digest on a registry with a port is no userinfo; a password still is.
    @Test func anImagePinnedByDigestIsShownWhole() {
        let pinned = "127.0.0.1:5000/heroku/heroku@sha256:" + String(repeating: "ab", count: 32)
        #expect(Masking.text("Building on the stack image \(pinned) (127.0.0.1:5000)").contains(pinned))
        #expect(Masking.text("look up user:TOKEN@sha256.example") == "look up ***@sha256.example")
    }
}

@Suite struct UserinfoMaskingTests {
    @Test(arguments: [
        ("git://user:TOKEN@host.example/r.git", "git://***@host.example/r.git"),
        ("ssh://user:TOKEN@host.example/r.git", "ssh://***@host.example/r.git"),
        (
            "fatal: unable to look up user:TOKEN@host.example (port 9418)",
            "fatal: unable to look up ***@host.example (port 9418)"
        ),
        ("user:TOKEN@host.example:org/repo.git", "***@host.example:org/repo.git"),
        ("clone 'user:TOKEN@h:p' failed", "clone '***@h:p' failed"),
        ("https://h.example/a.tgz?sig=TOKEN&x=TOKEN", "https://h.example/a.tgz?sig=***&x=***"),
        ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
        ("mail me at bob@example.com", "mail me at bob@example.com"),
    ])
    func everyFormOfUserinfoIsMasked(_ input: String, _ expected: String) {
        #expect(Masking.text(input) == expected)
        #expect(!Masking.text(input).contains("TOKEN"))
    }

    @Test func gitsOwnLinesAreScrubbedOfTheURLsSecrets() {
        let url = "git://user:TOKEN1234@host.example/r.git?k=QUERYVALUE"
        let output = "fatal: unable to look up user:TOKEN1234@host.example\nremote said TOKEN1234 and QUERYVALUE"
        let scrubbed = Masking.scrub(output, secretsOf: url)
        #expect(!scrubbed.contains("TOKEN1234"))
        #expect(!scrubbed.contains("QUERYVALUE"))
        #expect(scrubbed.hasPrefix("fatal: unable to look up ***@host.example"))
    }

    @Test func maskingIsLinearOnHostileText() {
        let text = String(repeating: "a:@", count: 200_000) + String(repeating: "@", count: 200_000)
        let start = ContinuousClock.now
        _ = Masking.text(text)
        #expect(ContinuousClock.now - start < .seconds(5))
    }
}
