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
}
