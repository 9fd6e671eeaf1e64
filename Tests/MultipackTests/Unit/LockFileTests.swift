import Testing

@testable import MultipackKit

/// The lock's format: `.buildpacks`' lines with their pins, read back by the same parser.
@Suite struct LockFileTests {
    let commit = String(repeating: "c", count: 40)
    let digest = String(repeating: "d", count: 64)

    @Test func aLockIsReadByTheListParserAndMatchesItsList() throws {
        let listed = try BuildpackList.parse("https://h/bp.git#main\n# comment\nheroku/python\n./vendor/bp\n")
        let lock = LockFile(entries: [
            listed[0].pinned(.commit(commit)), listed[1].pinned(.sha256(digest)), listed[2].pinned(nil),
        ])
        let reread = LockFile(entries: try BuildpackList.parse(lock.text))
        #expect(lock.text.hasPrefix("# Written by `multipack lock`"))
        #expect(reread.entries.map(\.commit) == [commit, nil, nil])
        #expect(reread.entries.map(\.sha256) == [nil, digest, nil])
        #expect(reread.firstDifference(from: listed) == nil)
        #expect(reread.pinSummary == "2 of 3 pinned, 1 local directory")
        let pinned = try reread.pinning(listed)
        #expect(pinned.allSatisfy { !$0.isFloating } && pinned[0].pinnedByLock && pinned[0].line == 1)
    }

    @Test func theFirstDifferingLineIsNamed() throws {
        let lock = LockFile(
            entries: try BuildpackList.parse("heroku/python sha256=\(digest)\nheroku/ruby sha256=\(digest)\n"))
        let inserted = try BuildpackList.parse("heroku/python\nheroku/nodejs\nheroku/ruby\n")
        #expect(lock.firstDifference(from: inserted)?.contains(".buildpacks line 2 is `heroku/nodejs`") == true)
        let appended = try BuildpackList.parse("heroku/python\nheroku/ruby\nheroku/go\n")
        #expect(lock.firstDifference(from: appended)?.contains(".buildpacks line 3, `heroku/go`, is not in") == true)
        let removed = try BuildpackList.parse("heroku/python\n")
        #expect(
            lock.firstDifference(from: removed)?.contains("line 2, `heroku/ruby`, is no longer in .buildpacks") == true)
        // A pin `.buildpacks` holds itself must be the lock's.
        let own = try BuildpackList.parse("heroku/python sha256=\(String(repeating: "e", count: 64))\nheroku/ruby\n")
        #expect(lock.firstDifference(from: own) != nil)
        expectUsageError { try lock.pinning(inserted) }
    }

    @Test func commitPinsGitEntriesOnly() throws {
        #expect(try BuildpackList.parse("https://h/bp.git#v1 commit=\(commit.uppercased())\n")[0].commit == commit)
        for line in ["heroku/python commit=\(commit)", "./bp commit=\(commit)", "https://h/bp.git commit=abc"] {
            #expect(throws: BuildpackListError.self) { try BuildpackList.parse(line + "\n") }
        }
    }

    @Test func whatFloats() throws {
        let entries = try BuildpackList.parse(
            "https://h/a.git#main\nhttps://h/a.git#\(commit)\nhttps://h/a.git#v1 commit=\(commit)\n"
                + "https://h/x.tgz\nhttps://h/x.tgz sha256=\(digest)\n./vendor/bp\n")
        #expect(entries.map(\.isFloating) == [true, false, false, true, false, false])
    }
}
