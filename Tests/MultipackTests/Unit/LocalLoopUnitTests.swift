import Foundation
import Testing

@testable import MultipackKit

/// app.json's lists and the choice of a local build's buildpacks (SPEC §8, §17).
@Suite struct BuildpackChoiceTests {
    @Test(arguments: [
        "https://github.com/multipack/multipack", "https://github.com/multipack/multipack.git",
        "HTTPS://GitHub.com/multipack/multipack#v1.2.3", "http://github.com/multipack/multipack/",
        "https://github.com/multipack/multipack/releases/download/v1.0.0/multipack.tgz", "multipack/multipack",
        "urn:buildpack:multipack/multipack",
    ])
    func namesMultipack(_ url: String) {
        #expect(BuildpackChoice.namesMultipack(url))
    }

    @Test(arguments: [
        "https://github.com/multipack/multipack-fork", "https://github.com/other/multipack", "heroku/nodejs",
        "https://github.com/multipack/multipackx.git", "multipack/multipack2",
    ])
    func namesAnotherBuildpack(_ url: String) {
        #expect(!BuildpackChoice.namesMultipack(url))
    }

    static func appJSON(_ text: String) throws -> AppJSON {
        try JSONDecoder().decode(AppJSON.self, from: Data(text.utf8))
    }

    @Test func readsWhatHerokuCIReads() throws {
        let json = try Self.appJSON(
            #"""
            {"buildpacks": [{"url": "heroku/nodejs"}, {"url": "heroku/python"}],
             "environments": {"test": {"env": {"A": "1", "B": {"value": "2", "required": true}},
               "addons": ["heroku-postgresql:in-dyno", {"plan": "heroku-redis:in-dyno", "as": "REDIS"}],
               "buildpacks": [{"url": "heroku/ruby"}], "scripts": {"test": "rake", "test-setup": ""}}},
             "name": "ignored", "formation": {"web": {"quantity": 1}}}
            """#)
        #expect(json.buildpacks == ["heroku/nodejs", "heroku/python"])
        #expect(Dictionary(json.testEnv.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 }) == ["A": "1", "B": "2"])
        #expect(json.testAddons == ["heroku-postgresql:in-dyno", "heroku-redis:in-dyno"])
        #expect(json.testBuildpacks == ["heroku/ruby"])
        #expect(json.test == "rake" && json.testSetup == nil)
    }

    @Test func theChoiceFollowsHerokusPrecedence() throws {
        let json = try Self.appJSON(
            #"{"buildpacks": [{"url": "heroku/nodejs"}], "environments": {"test": {"buildpacks": [{"url": "heroku/ruby"}]}}}"#
        )
        let listed = try BuildpackList.parse("heroku/python\n")
        let flag = try BuildpackList.parse("heroku/go\n")
        func choose(_ commandLine: [BuildpackEntry], ci: Bool, _ listed: [BuildpackEntry]?) throws -> BuildpackChoice {
            try BuildpackChoice.choose(commandLine: commandLine, ci: ci, appJSON: json, listed: listed, appDir: "/app")
        }
        #expect(try choose(flag, ci: true, listed).source == .commandLine)
        #expect(try choose([], ci: true, listed).entries.map(\.text) == ["heroku/ruby"])
        #expect(try choose([], ci: false, listed).source == .dotBuildpacks)
        #expect(try choose([], ci: false, nil).entries.map(\.text) == ["heroku/nodejs"])
    }

    @Test func multipackItselfStandsForTheBuildpacksFile() throws {
        let json = try Self.appJSON(
            #"{"buildpacks": [{"url": "heroku/nodejs"}, {"url": "https://github.com/multipack/multipack"}]}"#)
        let listed = try BuildpackList.parse("heroku/python\nheroku/go\n")
        let expanded = try BuildpackChoice.choose(
            commandLine: [], ci: true,
            appJSON: try Self.appJSON(
                #"{"environments": {"test": {"buildpacks": [{"url": "heroku/nodejs"}, {"url": "multipack/multipack"}]}}}"#
            ),
            listed: listed, appDir: "/app")
        #expect(expanded.entries.map(\.text) == ["heroku/nodejs", "heroku/python", "heroku/go"])
        let refused = #expect(throws: MultipackError.self) {
            try BuildpackChoice.choose(commandLine: [], ci: false, appJSON: json, listed: nil, appDir: "/app")
        }
        #expect(refused?.exitCode == 2)
        #expect(refused?.headline.contains("names multipack itself") == true)
    }
}

/// Which process types `multipack run` starts (SPEC §17).
@Suite struct ProcessTypeChoiceTests {
    func run(_ processes: [String], procfile: String?, defaults: [(String, String)]) throws -> [String] {
        let temp = try TempDir("types")
        if let procfile { try temp.write("app/Procfile", procfile) } else { _ = temp.sub("app") }
        var release = Release()
        release.processTypes = defaults.map { (key: $0.0, value: $0.1) }
        var localRun = LocalRun(target: temp.path + "/app", invocation: Invocation(buildpackDir: "/", environment: [:]))
        localRun.processes = processes
        let source = LocalRun.Source(home: temp.path + "/app", release: release, buildConfig: [], dotenv: nil)
        return try localRun.selectedTypes(source).map(\.key)
    }

    @Test func everyProcfileTypeButReleaseInItsOrder() throws {
        let types = try run([], procfile: "worker: w\nrelease: r\nweb: s\n", defaults: [("web", "x"), ("clock", "c")])
        #expect(types == ["worker", "web"])
    }

    @Test func withoutAProcfileOnlyTheDefaultWeb() throws {
        #expect(try run([], procfile: nil, defaults: [("worker", "w"), ("web", "s")]) == ["web"])
        #expect(throws: MultipackError.self) { try run([], procfile: nil, defaults: [("worker", "w")]) }
    }

    @Test func namedTypesInProcfileOrderAndAnUnknownOneRefused() throws {
        #expect(try run(["web", "worker"], procfile: "worker: w\nweb: s\n", defaults: []) == ["worker", "web"])
        #expect(try run(["clock"], procfile: "web: s\n", defaults: [("clock", "c")]) == ["clock"])
        let error = #expect(throws: MultipackError.self) { try run(["nope"], procfile: "web: s\n", defaults: []) }
        #expect(error?.exitCode == 2)
    }
}

/// Several processes together, their lines prefixed (SPEC §17), with real `sh` processes.
@Suite struct FormationTests {
    func run(_ scripts: [(String, String)], grace: Duration = .seconds(5), colors: Bool = false) throws -> (
        code: Int32, output: String, notes: String
    ) {
        let temp = try TempDir("formation")
        let path = temp.path + "/out"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        defer { close(fd) }
        let notes = NotesBox()
        let members = scripts.map { name, script in
            Formation.Member(
                name: name, executable: "/bin/sh", arguments: ["-c", script], directory: temp.path,
                environment: ["PATH": "/usr/bin:/bin"])
        }
        let formation = Formation(
            members: members, grace: grace, colors: colors, stop: StopToken(ManualStop()), output: fd,
            notes: Log { text, _ in notes.append(text) })
        let code = try formation.run()
        return (code, try String(contentsOfFile: path, encoding: .utf8), notes.text)
    }

    final class NotesBox: @unchecked Sendable {
        private let lock = NSLock()
        private var value = ""
        func append(_ text: String) { lock.withLock { value += text } }
        var text: String { lock.withLock { value } }
    }

    @Test func linesArePrefixedPaddedAndTheFirstExitDecides() throws {
        let (code, output, notes) = try run([
            // The first waits for the second to have its trap: both share the directory.
            ("web.1", "while [ ! -e ready ]; do sleep 0.05; done; printf 'one\\ntwo'; exit 4"),
            ("worker.1", "trap 'echo stopping; exit 0' TERM; touch ready; while true; do sleep 0.05; done"),
        ])
        #expect(code == 4)
        let lines = output.split(separator: "\n").map(String.init)
        #expect(lines.contains("web.1    | one") && lines.contains("web.1    | two"), "\(output)")
        #expect(lines.contains("worker.1 | stopping"), "\(output)")
        #expect(notes.contains("web.1 ended with exit code 4: stopping worker.1"), "\(notes)")
    }

    @Test func aLineWithoutEndIsLetOutInPiecesAndColoursOnlyWhenAsked() throws {
        let long = Formation.maxLine + 10
        let (_, output, _) = try run([("web.1", "head -c \(long) /dev/zero | tr '\\0' x")], colors: true)
        let lines = output.split(separator: "\n")
        #expect(lines.count == 2, "\(lines.map(\.count))")
        #expect(lines.allSatisfy { $0.hasPrefix("\u{1B}[36mweb.1 | \u{1B}[0m") })
        #expect(lines.map { $0.filter { $0 == "x" }.count }.reduce(0, +) == long)
    }

    @Test func aProcessThatIgnoresSIGTERMIsKilledAfterTheGrace() throws {
        let (code, _, notes) = try run(
            [
                ("web.1", "while [ ! -e ready ]; do sleep 0.05; done; exit 0"),
                ("stubborn.1", "trap '' TERM; touch ready; while true; do sleep 0.05; done"),
            ],
            grace: .milliseconds(300))
        #expect(code == 0)
        #expect(notes.contains("stubborn.1 ended with signal SIGKILL"), "\(notes)")
    }
}
