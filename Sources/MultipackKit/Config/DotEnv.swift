import Glibc

/// Reads a dotenv file (`--env-file`): `KEY=VALUE` lines, an optional `export ` prefix, `#`
/// comments and blank lines, values bare, 'single-quoted' (literal) or "double-quoted" (with
/// `\n`, `\t`, `\"`, `\\` escapes). A line that is none of these is an error with its number.
public enum DotEnv {
    /// The most a dotenv file (`--env-file`, an app's `.env`) may hold: Heroku allows 32 KB of
    /// config vars in all, so anything near this is not a config file (`/dev/zero`, a log).
    public static let maxBytes = 1 << 20

    /// Why a dotenv file the user gave cannot be read, as a sentence ending in a period.
    static func readProblem(
        _ error: any Error, file: String,
        tooLarge: String = "far more than config vars take (Heroku allows 32 KB in all)"
    ) -> String {
        guard let error = error as? FileError else {
            return "\(file) could not be read: \(MultipackError.reason(error))."
        }
        switch error.errno {
        case EINVAL, ELOOP: return "\(file) is \(error.detail ?? "not a regular file")."
        case EFBIG:
            return "\(file) is larger than \(TreeSize.format(Int64(maxBytes))), \(tooLarge)."
        default: return "\(file) could not be read: \(String(cString: strerror(error.errno)))."
        }
    }

    public static func parse(_ text: String, file: String) throws(MultipackError) -> [(key: String, value: String)] {
        var pairs: [(key: String, value: String)] = []
        var positions: [String: Int] = [:]
        var body = Substring(text)
        if body.hasPrefix("\u{FEFF}") { body = body.dropFirst() }
        for (index, rawLine) in body.lines.enumerated() {
            var line = rawLine.trimmingBlanks()
            if line.isEmpty || line.first == "#" { continue }
            if line.hasPrefix("export ") || line.hasPrefix("export\t") { line = line.dropFirst(7).trimmingBlanks() }
            func bad(_ reason: String) -> MultipackError {
                MultipackError.usage(
                    "\(file) line \(index + 1) is not a dotenv line: \(reason).",
                    hint:
                        "Write KEY=VALUE (optionally `export KEY=VALUE`, the value in quotes when it has blanks or #); fix or remove line \(index + 1)."
                )
            }
            guard let equals = line.firstIndex(of: "=") else {
                throw bad("there is no `=` in `\(Masking.text(String(line)))`")
            }
            let key = line[..<equals].trimmingBlanks()
            guard BuildEnvironment.isName(key) else {
                throw bad("`\(key)` is not a variable name (letters, digits and _, not starting with a digit)")
            }
            let rest = line[line.index(after: equals)...].trimmingBlanks()
            let value: String
            switch rest.first {
            case "'":
                guard let close = rest.dropFirst().firstIndex(of: "'") else {
                    throw bad("the single quote is never closed")
                }
                value = String(rest[rest.index(after: rest.startIndex)..<close])
                try trailing(rest[rest.index(after: close)...], bad)
            case "\"":
                var out = ""
                var scan = rest.dropFirst()
                var closed = false
                while let c = scan.first {
                    scan = scan.dropFirst()
                    if c == "\"" {
                        closed = true
                        break
                    }
                    if c == "\\", let next = scan.first {
                        scan = scan.dropFirst()
                        switch next {
                        case "n": out.append("\n")
                        case "t": out.append("\t")
                        case "r": out.append("\r")
                        default: out.append(next)
                        }
                        continue
                    }
                    out.append(c)
                }
                guard closed else { throw bad("the double quote is never closed") }
                value = out
                try trailing(scan, bad)
            default:
                // A bare value ends at ` #` (a comment), as in most dotenv readers.
                var bare = rest
                if let hash = bare.firstRange(of: " #") ?? bare.firstRange(of: "\t#") {
                    bare = bare[..<hash.lowerBound]
                }
                value = String(bare.trimmingBlanks())
            }
            pairs.upsert(String(key), value, index: &positions)
        }
        return pairs
    }

    private static func trailing(_ rest: Substring, _ bad: (String) -> MultipackError) throws(MultipackError) {
        let after = rest.trimmingBlanks()
        if !after.isEmpty && after.first != "#" { throw bad("there is text after the closing quote") }
    }
}

/// Config vars given on the command line: each `--env-file` in order (a later file wins a name),
/// then each `--env` on top. `--env NAME` without `=` takes NAME's value from the caller's
/// environment, as `docker run -e NAME` does.
public struct ConfigVarArguments: Sendable {
    public var pairs: [String] = []
    public var envFiles: [String] = []

    public init(pairs: [String] = [], envFiles: [String] = []) {
        self.pairs = pairs
        self.envFiles = envFiles
    }

    /// The config vars, `middle` (app.json's `environments.test.env` for a CI run) winning over the
    /// `--env-file`s and `--env` over all.
    public func resolve(environment: [String: String] = [:], over middle: [(key: String, value: String)] = []) throws
        -> [(key: String, value: String)]
    {
        try files().upserting(middle).upserting(flags(environment: environment))
    }

    private func files() throws -> [(key: String, value: String)] {
        var vars: [(key: String, value: String)] = []
        var index: [String: Int] = [:]
        for envFile in envFiles {
            let text: String
            do {
                // The user named it: a pipe (`--env-file <(…)`, /dev/stdin) is read to its end.
                text = String(
                    decoding: try Files.readNamedFile(Files.absolute(envFile), limit: DotEnv.maxBytes), as: UTF8.self)
            } catch let stopped as StopRequested {
                throw MultipackError.interrupted(stopped.signal, "while the --env-file \(envFile) was read")
            } catch {
                throw MultipackError.usage(
                    "The --env-file " + DotEnv.readProblem(error, file: envFile),
                    hint: "Give a dotenv file (KEY=VALUE lines); a relative path is relative to the current directory.")
            }
            for (key, value) in try DotEnv.parse(text, file: envFile) { vars.upsert(key, value, index: &index) }
        }
        return vars
    }

    private func flags(environment: [String: String]) throws -> [(key: String, value: String)] {
        var vars: [(key: String, value: String)] = []
        var index: [String: Int] = [:]
        for pair in pairs {
            let name = pair.firstIndex(of: "=").map { pair[..<$0] } ?? pair[...]
            guard BuildEnvironment.isName(name) else {
                throw MultipackError.usage(
                    "--env takes NAME=VALUE or NAME, but got `\(Masking.text(pair))`.",
                    hint:
                        "Write it as --env NAME=VALUE, or --env NAME to pass NAME's value from your environment (NAME: letters, digits and _, not starting with a digit)."
                )
            }
            if let equals = pair.firstIndex(of: "=") {
                vars.upsert(String(name), String(pair[pair.index(after: equals)...]), index: &index)
            } else if let value = environment[String(name)] {
                vars.upsert(String(name), value, index: &index)
            } else {
                throw MultipackError.usage(
                    "--env \(name) takes the value of \(name) from your environment, but \(name) is not set there.",
                    hint: "Export \(name) first, or write --env \(name)=VALUE.")
            }
        }
        return vars
    }
}
