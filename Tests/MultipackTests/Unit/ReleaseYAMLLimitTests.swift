import Foundation
import Testing

@testable import MultipackKit

/// SPEC §7.5: release YAML in linear time, bounded depth and alias expansion.
@Suite struct ReleaseYAMLLimitTests {
    /// A huge release is read whole and in order (how fast is the benchmarks' business, not a test's).
    @Test func eightyThousandConfigVarsAreReadWholeAndInOrder() throws {
        var text = "---\nconfig_vars:\n"
        for i in 0..<80_000 { text += "  KEY_\(i): \"value \(i)\"\n" }
        let release = try Release.parse(text)
        #expect(release.configVars.count == 80_000)
        #expect(release.configVars.first.map { $0.key == "KEY_0" && $0.value == "value 0" } == true)
        #expect(release.configVars.last.map { $0.key == "KEY_79999" && $0.value == "value 79999" } == true)
    }

    @Test func twoHundredKilobytesOfBracketsAreRefusedNotACrash() {
        let text = "config_vars: " + String(repeating: "[", count: 200_000)
        do {
            _ = try Release.parse(text)
            Issue.record("accepted")
        } catch {
            #expect(error.message.contains("nested more than 64 levels deep"))
        }
    }

    @Test func deepBlockNestingIsRefused() {
        var text = ""
        for depth in 0..<100 { text += String(repeating: " ", count: depth) + "k\(depth):\n" }
        #expect(throws: ReleaseError.self) { try Release.parse(text) }
    }

    @Test func aliasesCannotExplode() {
        var text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for i in 1..<12 {
            text += "a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ") + "]\n"
        }
        do {
            _ = try Release.parse(text)
            Issue.record("accepted")
        } catch {
            #expect(error.message.contains("aliases expand to more than"))
        }
    }

    @Test func aliasesWithinTheBoundStillWork() throws {
        let release = try Release.parse("config_vars:\n  A: &v shared\n  B: *v\naddons: &x [p]\n")
        #expect(release.configVars.map(\.value) == ["shared", "shared"])
        #expect(release.addons == ["p"])
    }

    @Test func nullsQuotedNullsAndEmptyValues() throws {
        let release = try Release.parse("config_vars:\n  A: ~\n  B: 'null'\n  C:\n  D: \"\"\n")
        #expect(release.configVars.map(\.value) == ["", "null", "", ""])
    }
}
