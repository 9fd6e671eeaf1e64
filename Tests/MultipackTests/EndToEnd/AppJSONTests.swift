import Foundation
import Testing

/// app.json as Heroku CI and review apps read it (SPEC §8, §17): its `buildpacks` list,
/// `environments.test`'s env, buildpacks and add-ons.
@Suite struct AppJSONTests {
    static func write(_ object: [String: Any], to app: String) throws {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted])
        try data.write(to: URL(fileURLWithPath: app + "/app.json"))
    }

    static func urls(_ world: LocalWorld, _ names: [String]) -> [[String: String]] {
        names.map { ["url": world.buildpack($0)] }
    }

    @Test func anAppWithoutBuildpacksFileIsBuiltWithAppJSONsListInOrder() throws {
        let world = try LocalWorld("appjson-list")
        let app = try world.app(buildpacks: nil)
        try FileManager.default.removeItem(atPath: app + "/.buildpacks")
        try Self.write(["buildpacks": Self.urls(world, ["node", "python"])], to: app)
        let (json, output) = try world.buildJSON([app])
        #expect(output.status == 0, "\(output.all)")
        #expect(
            output.stderr.contains("Using app.json's buildpacks (the app has no .buildpacks), as Heroku does"),
            "\(output.all)")
        #expect(
            output.stderr.contains("       1. \(world.buildpack("node"))\n       2. \(world.buildpack("python"))\n"))
        #expect(output.stderr.contains("Fetching 2 buildpacks (app.json's buildpacks)"), "\(output.all)")
        // In order: the node child's export reached the python child.
        #expect(output.stderr.contains("found v20.0.0-fixture at "))
        let children = try #require(json["children"] as? [[String: Any]])
        #expect(children.map { $0["name"] as? String } == ["Node.js (fixture)", "Python (fixture)"])

        // .buildpacks wins when both exist.
        try (world.buildpack("probe") + "\n").write(toFile: app + "/.buildpacks", atomically: true, encoding: .utf8)
        let both = try world.buildJSON([app])
        #expect(both.output.status == 0, "\(both.output.all)")
        #expect(both.output.stderr.contains("app.json lists buildpacks too: .buildpacks wins"))
        #expect((both.json["children"] as? [[String: Any]])?.map { $0["name"] as? String } == ["Probe (fixture)"])
    }

    @Test func multipackItselfStandsForBuildpacksFileAndIsRefusedWithoutOne() throws {
        let world = try LocalWorld("appjson-self")
        let app = try world.app(buildpacks: nil)
        try FileManager.default.removeItem(atPath: app + "/.buildpacks")
        for own in [
            "https://github.com/multipack/multipack", "https://github.com/multipack/multipack.git#v1.2.0",
            "multipack/multipack",
        ] {
            try Self.write(["buildpacks": [["url": world.buildpack("node")], ["url": own]]], to: app)
            let build = try world.multipack(["build", app])
            #expect(build.status == 2, "\(own): \(build.all)")
            #expect(build.stderr.contains("app.json's buildpacks names multipack itself"), "\(build.stderr)")
            #expect(build.stderr.contains("the app has no .buildpacks"))
        }
        // For ci, with a .buildpacks: its entries take multipack's place in the test list.
        try (world.buildpack("node") + "\n").write(toFile: app + "/.buildpacks", atomically: true, encoding: .utf8)
        try Self.write(
            [
                "environments": [
                    "test": [
                        "buildpacks": [
                            ["url": "https://github.com/multipack/multipack"], ["url": world.buildpack("tester")],
                        ]
                    ]
                ]
            ], to: app)
        let ci = try world.multipack(["ci", app, "--json"])
        #expect(ci.status == 0, "\(ci.all)")
        #expect(ci.stderr.contains("Using app.json's environments.test.buildpacks (they win over .buildpacks)"))
        #expect(ci.stderr.contains("(app.json's environments.test.buildpacks)"), "\(ci.all)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(ci.stdout.utf8)) as? [String: Any])
        let children = try #require(json["children"] as? [[String: Any]])
        #expect(children.map { $0["name"] as? String } == ["Node.js (fixture)", "Tester (fixture)"])
    }

    @Test func ciAppliesTheTestEnvNamesSkippedAddonsAndLetsEnvWin() throws {
        let world = try LocalWorld("appjson-ci")
        let app = try world.app(buildpacks: ["tester"])
        try world.temp.write("ci.env", "FROM_FILE=file\nOVERRIDDEN=file\n")
        try Self.write(
            [
                "environments": [
                    "test": [
                        "env": ["FROM_APP_JSON": "yes", "OVERRIDDEN": "app.json", "DESCRIBED": ["value": "v"]],
                        "addons": ["heroku-postgresql:in-dyno", ["plan": "heroku-redis:in-dyno"]],
                        "scripts": ["test": "echo \"seen: $FROM_FILE $FROM_APP_JSON $OVERRIDDEN $DESCRIBED $CI\""],
                    ]
                ]
            ], to: app)
        let ci = try world.multipack(["ci", app, "--env-file", "ci.env"])
        #expect(ci.status == 0, "\(ci.all)")
        #expect(ci.stdout.contains("seen: file yes app.json v true\n"), "\(ci.all)")
        #expect(ci.stderr.contains("Skipped the add-on heroku-postgresql:in-dyno"), "\(ci.all)")
        #expect(ci.stderr.contains("Skipped the add-on heroku-redis:in-dyno"))
        let flag = try world.multipack(["ci", app, "--env-file", "ci.env", "-e", "OVERRIDDEN=flag"])
        #expect(flag.stdout.contains("seen: file yes flag v true\n"), "\(flag.all)")
        // A build does not apply the test environment.
        try "web: echo \"[$FROM_APP_JSON]\"\n".write(toFile: app + "/Procfile", atomically: true, encoding: .utf8)
        #expect(try world.multipack(["build", app]).status == 0)
        #expect(try world.multipack(["run", app, "web"]).stdout == "[]\n")
    }

    @Test func aMalformedListIsBadInput() throws {
        let world = try LocalWorld("appjson-bad")
        let app = try world.app(buildpacks: nil)
        try FileManager.default.removeItem(atPath: app + "/.buildpacks")
        try #"{"buildpacks": ["heroku/nodejs"]}"#.write(toFile: app + "/app.json", atomically: true, encoding: .utf8)
        let build = try world.multipack(["build", app])
        #expect(build.status == 2, "\(build.all)")
        #expect(build.stderr.contains("The app's app.json cannot be read: buildpacks[0] is not what Heroku expects"))
        try #"{"buildpacks": [{"url": "https://user:tok@example.com/x y"}]}"#.write(
            toFile: app + "/app.json", atomically: true, encoding: .utf8)
        let bad = try world.multipack(["build", app])
        #expect(bad.status == 2, "\(bad.all)")
        #expect(bad.stderr.contains("app.json's buildpacks[0] `https://***@example.com/x y`"), "\(bad.stderr)")
        #expect(!bad.all.contains("tok"))
    }
}
