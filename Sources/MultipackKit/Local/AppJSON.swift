import FoundationEssentials

/// The parts of an app's `app.json` that Heroku CI and review apps read (SPEC §8, §17): the
/// `buildpacks` list, and `environments.test`'s scripts, config vars, buildpacks and add-ons.
/// Everything else in the file is ignored.
struct AppJSON: Decodable {
    /// `buildpacks`: the list Heroku uses for CI and review apps (`[{"url": "heroku/nodejs"}, …]`).
    var buildpacks: [String]?
    /// `environments.test.scripts["test-setup"]`: run once after test-compile.
    var testSetup: String?
    /// `environments.test.scripts.test`: run instead of the buildpacks' `bin/test`.
    var test: String?
    /// `environments.test.env`: config vars of a CI run, in the file's order.
    var testEnv: [(key: String, value: String)] = []
    /// `environments.test.buildpacks`: a CI run's list, winning over `.buildpacks` and `buildpacks`.
    var testBuildpacks: [String]?
    /// `environments.test.addons`: what Heroku CI would provision (a local run provisions none).
    var testAddons: [String] = []

    private struct Environments: Decodable { var test: TestEnvironment? }
    private struct TestEnvironment: Decodable {
        var scripts: Scripts?
        var env: OrderedStrings?
        var buildpacks: [Buildpack]?
        var addons: [Addon]?
    }
    private struct Scripts: Decodable {
        var test: String?
        var testSetup: String?
        enum CodingKeys: String, CodingKey {
            case test
            case testSetup = "test-setup"
        }
    }
    private struct Buildpack: Decodable { var url: String }
    /// `"heroku-postgresql"` or `{"plan": "heroku-postgresql:in-dyno", …}`.
    private struct Addon: Decodable {
        var plan: String
        private enum CodingKeys: String, CodingKey { case plan }
        init(from decoder: any Decoder) throws {
            if let plan = try? decoder.singleValueContainer().decode(String.self) {
                self.plan = plan
            } else {
                plan = try decoder.container(keyedBy: CodingKeys.self).decode(String.self, forKey: .plan)
            }
        }
    }
    /// An object of strings (or of `{"value": "…"}`, as the top-level `env` writes them), in order.
    private struct OrderedStrings: Decodable {
        var pairs: [(key: String, value: String)] = []
        private struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }
        private struct Described: Decodable { var value: String }
        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: Key.self)
            var index: [String: Int] = [:]
            for key in container.allKeys where !key.stringValue.hasPrefix(JSONLastKeyWins.renamedPrefix) {
                let value: String
                if let text = try? container.decode(String.self, forKey: key) {
                    value = text
                } else {
                    value = try container.decode(Described.self, forKey: key).value
                }
                pairs.upsert(key.stringValue, value, index: &index)
            }
        }
    }
    private enum CodingKeys: String, CodingKey { case environments, buildpacks }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        buildpacks = try container.decodeIfPresent([Buildpack].self, forKey: .buildpacks)?.map(\.url)
        let environment = try container.decodeIfPresent(Environments.self, forKey: .environments)?.test
        test = environment?.scripts?.test.flatMap { $0.isEmpty ? nil : $0 }
        testSetup = environment?.scripts?.testSetup.flatMap { $0.isEmpty ? nil : $0 }
        testEnv = environment?.env?.pairs ?? []
        testBuildpacks = environment?.buildpacks?.map(\.url)
        testAddons = environment?.addons?.map(\.plan) ?? []
    }

    /// Heroku's app.json files are a few KB; a larger one is not one (`/dev/zero` behind a link).
    static let maxBytes = 1 << 20

    /// nil when the app has no `app.json`; a file that is not what Heroku CI reads is bad input.
    static func read(_ path: String) throws -> AppJSON? {
        guard Files.lexists(path) else { return nil }
        let bytes: [UInt8]
        do {
            bytes = try Files.readRegularFile(path, limit: maxBytes)
        } catch {
            throw MultipackError.usage(
                "The app's app.json cannot be read: "
                    + DotEnv.readProblem(error, file: "it", tooLarge: "far more than an app.json holds"),
                hint: "Make app.json a JSON file, as Heroku reads it, or remove it.")
        }
        let appJSON: AppJSON
        do {
            // A key given twice: the last one counts, as in Heroku's own parsers.
            appJSON = try JSONDecoder().decode(AppJSON.self, from: Data(JSONLastKeyWins.rewrite(bytes)))
        } catch let error as DecodingError {
            throw MultipackError.usage(
                "The app's app.json cannot be read: \(Self.describe(error)).",
                hint:
                    "Heroku reads it too: fix it (buildpacks holds {\"url\": …} objects, environments.test's scripts and env hold strings), or remove it."
            )
        }
        // Each becomes a file of ENV_DIR: a name such as `../../etc/cron.d/x` must never get there.
        if let bad = appJSON.testEnv.first(where: { !BuildEnvironment.isName(Substring($0.key)) }) {
            throw MultipackError.usage(
                "The app's app.json cannot be read: environments.test.env has `\(BuildpackList.shown(bad.key))`, which is not a config var name.",
                hint:
                    "Name config vars with letters, digits and _, not starting with a digit, as --env and --env-file do."
            )
        }
        return appJSON
    }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .keyNotFound(_, let context):
            let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? "." + $0.stringValue }.joined()
            return "\(path.isEmpty ? "the top level" : String(path.drop { $0 == "." })) is not what Heroku expects"
        case .dataCorrupted:
            return "it is not valid JSON"
        @unknown default:
            return "it is not valid JSON"
        }
    }
}

/// The list a local build runs, and where it came from (SPEC §8, §17): `--buildpack`; for `ci`,
/// app.json's `environments.test.buildpacks`; the app's `.buildpacks` (multipack runs it); or,
/// without one, app.json's `buildpacks`, as Heroku runs it. An app.json entry naming multipack
/// itself stands for `.buildpacks`' entries.
struct BuildpackChoice {
    enum Source: Equatable {
        case commandLine, testBuildpacks, dotBuildpacks, appJSON

        /// Where the list came from, as the log names it.
        var shown: String {
            switch self {
            case .commandLine: return "--buildpack"
            case .testBuildpacks: return "app.json's environments.test.buildpacks"
            case .dotBuildpacks: return ".buildpacks"
            case .appJSON: return "app.json's buildpacks"
            }
        }
    }
    /// Empty for `.dotBuildpacks`: multipack itself runs over the app's `.buildpacks`.
    var entries: [BuildpackEntry]
    var source: Source

    /// multipack's canonical repository and buildpack id (buildpack.toml's `homepage` and `id`).
    static let ownURL = "https://github.com/multipack/multipack"
    static let ownID = "multipack/multipack"

    /// Whether an app.json URL names multipack itself: its repository (any ref, `.git`, a release
    /// archive under it), its id or its registry URN.
    static func namesMultipack(_ url: String) -> Bool {
        var text = url.trimmingBlanks().lowercased()
        if text == ownID || text == "urn:buildpack:" + ownID { return true }
        for scheme in ["https://", "http://", "git://"] where text.hasPrefix(scheme) {
            text = "https://" + text.dropFirst(scheme.count)
        }
        guard text.hasPrefix(ownURL) else { return false }
        let rest = text.dropFirst(ownURL.count)
        return rest.isEmpty || rest == ".git" || rest == "/" || rest.hasPrefix("#") || rest.hasPrefix(".git#")
            || rest.hasPrefix("/releases/") || rest.hasPrefix("/archive/")
    }

    /// `appJSON` is read once by the caller; `listed` is the app's `.buildpacks` (nil without one).
    static func choose(
        commandLine: [BuildpackEntry], ci: Bool, appJSON: AppJSON?, listed: [BuildpackEntry]?, appDir: String
    ) throws -> BuildpackChoice {
        if !commandLine.isEmpty { return BuildpackChoice(entries: commandLine, source: .commandLine) }
        if ci, let urls = appJSON?.testBuildpacks, !urls.isEmpty {
            let entries = try expand(urls, key: "environments.test.buildpacks", listed: listed, appDir: appDir)
            return BuildpackChoice(entries: entries, source: .testBuildpacks)
        }
        if listed != nil { return BuildpackChoice(entries: [], source: .dotBuildpacks) }
        if let urls = appJSON?.buildpacks, !urls.isEmpty {
            let entries = try expand(urls, key: "buildpacks", listed: listed, appDir: appDir)
            return BuildpackChoice(entries: entries, source: .appJSON)
        }
        return BuildpackChoice(entries: [], source: .dotBuildpacks)
    }

    /// app.json's URLs as list entries (read as `.buildpacks` lines are, relative paths against
    /// the app), multipack's own entry replaced by `.buildpacks`' entries.
    private static func expand(_ urls: [String], key: String, listed: [BuildpackEntry]?, appDir: String) throws
        -> [BuildpackEntry]
    {
        var entries: [BuildpackEntry] = []
        for (index, url) in urls.enumerated() {
            if namesMultipack(url) {
                guard let listed else {
                    throw MultipackError.usage(
                        "app.json's \(key) names multipack itself (\(BuildpackList.shown(url))), which stands for the buildpacks in .buildpacks, and the app has no .buildpacks.",
                        hint:
                            "List the app's buildpacks in .buildpacks, or name them in app.json instead of multipack.")
                }
                entries += listed
                continue
            }
            do throws(BuildpackListError) {
                entries.append(try BuildpackList.entry(url, line: index + 1, directory: appDir))
            } catch {
                throw MultipackError.usage(
                    "app.json's \(key)[\(index)] `\(BuildpackList.shown(url))` is not a buildpack reference: \(error.reason).",
                    hint:
                        "Give a URL (heroku/nodejs, https://github.com/heroku/heroku-buildpack-python, an archive URL) as Heroku reads it."
                )
            }
        }
        return entries
    }
}
