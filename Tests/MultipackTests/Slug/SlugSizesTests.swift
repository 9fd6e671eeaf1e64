import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Each child and hook is charged with what it added to BUILD_DIR, and `.slugfilter` trims it:
/// in the compile's summary, in `report` and in `multipack build --json`.
@Suite struct SlugSizesTests {
    /// Two children and both hooks that add known amounts; `.slugfilter` drops child 2's file.
    static func makeApp(in temp: TempDir, slugfilter: String = "# the big file goes\n- vendor/b/\n- *.tmp\n") throws
        -> String
    {
        try temp.write("grow-a/bin/detect", "#!/bin/sh\necho GrowA\n", executable: true)
        try temp.write(
            "grow-a/bin/compile",
            """
            #!/bin/sh
            mkdir -p "$1/vendor/a"
            head -c 3000 /dev/zero > "$1/vendor/a/one"
            head -c 1000 /dev/zero > "$1/vendor/a/two"
            ln -s one "$1/vendor/a/link"

            """, executable: true)
        try temp.write("grow-b/bin/detect", "#!/bin/sh\necho GrowB\n", executable: true)
        try temp.write(
            "grow-b/bin/compile",
            "#!/bin/sh\nmkdir -p \"$1/vendor/b\"\nhead -c 1048576 /dev/zero > \"$1/vendor/b/big\"\n",
            executable: true)
        let app = temp.path + "/app"
        try temp.write("app/.buildpacks", "\(temp.path)/grow-a\n\(temp.path)/grow-b\n")
        try temp.write("app/bin/pre_compile", "#!/bin/sh\nhead -c 100 /dev/zero > pre.txt\n", executable: true)
        try temp.write(
            "app/bin/post_compile", "#!/bin/sh\nhead -c 500 /dev/zero > hooked\nrm vendor/a/two\n: > late.tmp\n",
            executable: true)
        try temp.write("app/.slugfilter", slugfilter)
        return app
    }

    /// Bytes (files and symlinks) and files under `root`, by lstat.
    static func weight(_ root: String) -> (bytes: Int, files: Int) {
        var bytes = 0
        var files = 0
        let walker = FileManager.default.enumerator(atPath: root)
        while let relative = walker?.nextObject() as? String {
            var info = stat()
            guard lstat(root + "/" + relative, &info) == 0, info.st_mode & S_IFMT != S_IFDIR else { continue }
            files += 1
            bytes += Int(info.st_size)
        }
        return (bytes, files)
    }

    @Test func summaryAndReportShowWhatEachChildAndHookAdded() throws {
        let temp = try TempDir("sizes")
        let app = try Self.makeApp(in: temp)
        let cache = temp.sub("cache")
        let env = temp.sub("env")
        let mp = try Multipack(in: temp)
        let tmp = ["TMPDIR": temp.sub("tmp")]

        let compile = try mp.shim("compile", [app, cache, env], environment: tmp)
        #expect(compile.status == 0, "\(compile.all)")
        let summary = try #require(compile.stdout.components(separatedBy: "=====> Summary").last)
        let lines = summary.split(separator: "\n").map(String.init)
        // 3000 + 1000 + a 3-byte symlink; 1 MiB; 100 B; 500 B and an empty file added, 1000 B removed.
        #expect(lines.contains { $0.contains("[1/2]") && $0.contains("GrowA") && $0.contains("+3.9 KB") }, "\(summary)")
        #expect(lines.contains { $0.contains("[2/2]") && $0.contains("GrowB") && $0.contains("+1.0 MB") }, "\(summary)")
        #expect(lines.contains { $0.contains("bin/pre_compile") && $0.contains("+100 B") }, "\(summary)")
        #expect(lines.contains { $0.contains("bin/post_compile") && $0.contains("-500 B") }, "\(summary)")
        #expect(lines.contains { $0.contains(".slugfilter") && $0.contains("-1.0 MB") }, "\(summary)")
        #expect(compile.stdout.contains("Removed 2 files (1.0 MB) in "))
        // .slugfilter ran after post_compile: the file the hook made is gone.
        #expect(!FileManager.default.fileExists(atPath: app + "/late.tmp"))
        #expect(compile.stdout.contains("- vendor/b/  1.0 MB, 1 file"))
        #expect(!FileManager.default.fileExists(atPath: app + "/vendor/b"))

        let final = Self.weight(app)
        let report = try mp.shim("report", [app, cache, env], environment: tmp).stdout
        for line in [
            "child_1_growth_bytes: 4003", "child_1_growth_files: 3",
            "child_2_growth_bytes: 1048576", "child_2_growth_files: 1",
            "hook_pre_compile_growth_bytes: 100", "hook_pre_compile_growth_files: 1",
            "hook_post_compile_growth_bytes: -500", "hook_post_compile_growth_files: 1",
            "slugfilter_removed_bytes: 1048576", "slugfilter_removed_files: 2",
            "build_dir_bytes: \(final.bytes)", "build_dir_files: \(final.files)",
        ] {
            #expect(report.contains(line + "\n"), "\(line) not in\n\(report)")
        }
        #expect(report.contains("sizes_seconds: ") && report.contains("slugfilter_seconds: "))
    }

    @Test func sizesOffLeavesThemOutAndAnUnknownValueIsAUsageError() throws {
        let temp = try TempDir("sizes-off")
        let app = try Self.makeApp(in: temp)
        let cache = temp.sub("cache")
        let env = temp.sub("env")
        let mp = try Multipack(in: temp)
        let tmp = temp.sub("tmp")

        try "off".write(toFile: env + "/MULTIPACK_SIZES", atomically: true, encoding: .utf8)
        let compile = try mp.shim("compile", [app, cache, env], environment: ["TMPDIR": tmp])
        #expect(compile.status == 0, "\(compile.all)")
        #expect(!compile.stdout.contains("+1.0 MB"))
        // .slugfilter still applies: it is not a measure.
        #expect(!FileManager.default.fileExists(atPath: app + "/vendor/b"))
        let report = try mp.shim("report", [app, cache, env], environment: ["TMPDIR": tmp]).stdout
        #expect(!report.contains("growth") && !report.contains("build_dir_bytes"))
        #expect(report.contains("slugfilter_removed_bytes: 1048576"))

        try "maybe".write(toFile: env + "/MULTIPACK_SIZES", atomically: true, encoding: .utf8)
        let bad = try mp.shim("compile", [app, cache, env], environment: ["TMPDIR": tmp])
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("MULTIPACK_SIZES has the value `maybe`"))
    }

    @Test func aBadSlugfilterLineFailsBeforeAnythingRuns() throws {
        let temp = try TempDir("slugfilter-bad")
        let app = try Self.makeApp(in: temp, slugfilter: "- ok\n\nexclude vendor\n")
        let mp = try Multipack(in: temp)
        let compile = try mp.shim(
            "compile", [app, temp.sub("cache"), temp.sub("env")], environment: ["TMPDIR": temp.sub("tmp")])
        #expect(compile.status == 2, "\(compile.all)")
        #expect(compile.stderr.contains(" !     .slugfilter line 3 is not a filter rule: exclude vendor"))
        #expect(!compile.stdout.contains("GrowA"))
        #expect(!FileManager.default.fileExists(atPath: app + "/vendor"))
    }

    @Test func localBuildJSONCarriesTheSizes() throws {
        let world = try LocalWorld("sizes-json")
        let app = try Self.makeApp(in: world.temp)
        let (json, output) = try world.buildJSON([app])
        #expect(json["exit_code"] as? Int == 0, "\(output.all)")
        let children = try #require(json["children"] as? [[String: Any]])
        let growth = children.map { $0["growth"] as? [String: Int] }
        #expect(growth == [["bytes": 4003, "files": 3], ["bytes": 1_048_576, "files": 1]])
        let hooks = try #require(json["hook_growth"] as? [String: [String: Int]])
        #expect(hooks["pre_compile"] == ["bytes": 100, "files": 1])
        #expect(hooks["post_compile"] == ["bytes": -500, "files": 1])
        #expect(json["slugfilter_removed"] as? [String: Int] == ["bytes": 1_048_576, "files": 2])
        let buildDir = try #require(json["build_directory"] as? String)
        let final = Self.weight(buildDir)
        #expect(json["build_dir_size"] as? [String: Int] == ["bytes": final.bytes, "files": final.files])
        // The slug is what .slugfilter left.
        let slug = try #require((json["slug"] as? [String: Any])?["path"] as? String)
        let members = try world.slugMembers(slug)
        #expect(members.contains("./app/vendor/a/one") && !members.contains { $0.contains("vendor/b") })
    }
}
