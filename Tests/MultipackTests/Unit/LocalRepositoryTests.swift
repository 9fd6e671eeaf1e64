import Foundation
import Testing

@testable import MultipackKit

/// A local child's HEAD read from the repository's files must be what git itself answers, and
/// every layout the reader does not know must be left to git (nil).
@Suite struct LocalRepositoryTests {
    private func repository(in temp: TempDir, commits: Int = 2) throws -> String {
        let repo = temp.sub("repo")
        try Shell.git(["init", "--quiet", "--initial-branch=main"], in: repo)
        for number in 0..<commits {
            try temp.write("repo/file", "version \(number)\n")
            try Shell.git(["add", "-A"], in: repo)
            try Shell.git(["commit", "--quiet", "-m", "commit \(number)"], in: repo)
        }
        return repo
    }

    private func gitHead(_ repo: String) throws -> String {
        try Shell.gitOutput(["rev-parse", "--verify", "HEAD^{commit}"], in: repo)
    }

    @Test func headIsReadAsGitReadsItInEveryPlainLayout() throws {
        let temp = try TempDir("localhead")
        let repo = try repository(in: temp)
        // A loose branch ref.
        #expect(LocalRepository.head(of: repo) == (try gitHead(repo)))
        // Packed refs only, then a new loose commit over the packed one (the loose ref wins).
        try Shell.git(["pack-refs", "--all", "--prune"], in: repo)
        #expect(!FileManager.default.fileExists(atPath: repo + "/.git/refs/heads/main"))
        #expect(LocalRepository.head(of: repo) == (try gitHead(repo)))
        try temp.write("repo/file", "version 9\n")
        try Shell.git(["commit", "--quiet", "-am", "after packing"], in: repo)
        #expect(LocalRepository.head(of: repo) == (try gitHead(repo)))
        // A ref that names another.
        try Shell.git(["symbolic-ref", "refs/heads/alias", "refs/heads/main"], in: repo)
        try Shell.git(["symbolic-ref", "HEAD", "refs/heads/alias"], in: repo)
        #expect(LocalRepository.head(of: repo) == (try gitHead(repo)))
        // A bare repository.
        try Shell.git(["clone", "--quiet", "--bare", repo, temp.path + "/bare.git"], in: temp.path)
        #expect(LocalRepository.head(of: temp.path + "/bare.git") == (try gitHead(temp.path + "/bare.git")))
        // A detached HEAD on an older commit.
        try Shell.git(["checkout", "--quiet", "--detach", "HEAD~1"], in: repo)
        let detached = try gitHead(repo)
        #expect(LocalRepository.head(of: repo) == detached)
        #expect(LocalRepository.head(of: temp.path + "/bare.git") != detached)
    }

    @Test func unusualLayoutsAreLeftToGit() throws {
        let temp = try TempDir("localodd")
        // No commit yet: HEAD names a branch that does not exist.
        let empty = try repository(in: temp, commits: 0)
        #expect(LocalRepository.head(of: empty) == nil)
        // A linked worktree: `.git` is a file pointing elsewhere.
        let mainTemp = try TempDir("localmain")
        let main = try repository(in: mainTemp)
        let linked = temp.path + "/linked"
        try Shell.git(["worktree", "add", "--quiet", "--detach", linked], in: main)
        #expect(LocalRepository.head(of: linked) == nil)
        // A HEAD that names something outside refs/, or holds no commit.
        let oddTemp = try TempDir("localforged")
        let odd = try repository(in: oddTemp)
        try "ref: ../../outside\n".write(toFile: odd + "/.git/HEAD", atomically: true, encoding: .utf8)
        #expect(LocalRepository.head(of: odd) == nil)
        try "not a commit\n".write(toFile: odd + "/.git/HEAD", atomically: true, encoding: .utf8)
        #expect(LocalRepository.head(of: odd) == nil)
        // Not a repository at all.
        #expect(LocalRepository.head(of: temp.sub("plain")) == nil)
    }
}
