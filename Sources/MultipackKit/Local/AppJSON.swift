import FoundationEssentials

/// The part of an app's `app.json` Heroku CI reads for a test run: the scripts under
/// `environments.test.scripts` (SPEC §8). Everything else in the file is ignored.
struct AppJSON: Decodable {
    /// `environments.test.scripts["test-setup"]`: run once after test-compile.
    var testSetup: String?
    /// `environments.test.scripts.test`: run instead of the buildpacks' `bin/test`.
    var test: String?

    private struct Environments: Decodable { var test: TestEnvironment? }
    private struct TestEnvironment: Decodable { var scripts: Scripts? }
    private struct Scripts: Decodable {
        var test: String?
        var testSetup: String?
        enum CodingKeys: String, CodingKey {
            case test
            case testSetup = "test-setup"
        }
    }
    private enum CodingKeys: String, CodingKey { case environments }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let scripts = try container.decodeIfPresent(Environments.self, forKey: .environments)?.test?.scripts
        test = scripts?.test.flatMap { $0.isEmpty ? nil : $0 }
        testSetup = scripts?.testSetup.flatMap { $0.isEmpty ? nil : $0 }
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
        do {
            // A key given twice: the last one counts, as in Heroku's own parsers.
            return try JSONDecoder().decode(AppJSON.self, from: Data(JSONLastKeyWins.rewrite(bytes)))
        } catch let error as DecodingError {
            throw MultipackError.usage(
                "The app's app.json cannot be read: \(Self.describe(error)).",
                hint: "Heroku CI reads it too: fix it (environments.test.scripts holds strings), or remove it.")
        }
    }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .keyNotFound(_, let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return "\(path.isEmpty ? "the top level" : path) is not what Heroku CI expects (a string)"
        case .dataCorrupted:
            return "it is not valid JSON"
        @unknown default:
            return "it is not valid JSON"
        }
    }
}
