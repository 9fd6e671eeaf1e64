/// The variables a child's `export` changed or removed.
public struct EnvironmentChange: Equatable, Sendable {
    public var set: [String: String] = [:]
    public var unset: Set<String> = []
}

public enum BuildEnvironment {
    /// Path lists that are kept as unions (SPEC §7.3).
    public static let pathLists: Set<String> = [
        "PATH", "LD_LIBRARY_PATH", "LIBRARY_PATH", "CPATH", "CPPATH", "C_INCLUDE_PATH",
        "CPLUS_INCLUDE_PATH", "PKG_CONFIG_PATH", "MANPATH",
    ]

    /// Whether `text` can be the name of a shell variable.
    static func isName(_ text: Substring) -> Bool {
        guard let first = text.first, first == "_" || (first.isASCII && first.isLetter) else { return false }
        return text.allSatisfy { $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }
    }

    /// Variables bash sets for itself, which no export should be credited with.
    static let shellOwn: Set<String> = ["_", "SHLVL", "PWD", "OLDPWD"]

    /// Applies a child's export: changes and unsets, path lists as unions.
    public static func apply(_ change: EnvironmentChange, to environment: [String: String]) -> [String: String] {
        var result = environment
        for name in change.unset {
            if pathLists.contains(name) { continue }  // an earlier tool never vanishes
            result[name] = nil
        }
        for (name, value) in change.set {
            if pathLists.contains(name), let earlier = environment[name] {
                result[name] = unionPath(value, keeping: earlier)
            } else {
                result[name] = value
            }
        }
        return result
    }

    /// The child's entries first, then every earlier entry it dropped, in their earlier order.
    public static func unionPath(_ new: String, keeping earlier: String) -> String {
        var seen = Set<Substring>()
        var entries: [Substring] = []
        for entry in new.split(separator: ":") + earlier.split(separator: ":") where !seen.contains(entry) {
            seen.insert(entry)
            entries.append(entry)
        }
        return entries.joined(separator: ":")
    }

    /// Sources a child's `export` with bash on top of `environment` and returns what it changed.
    public static func sourceExport(
        _ file: String, environment: [String: String], in directory: String, owner: String? = nil,
        processes: any ProcessRunner = SystemProcesses(), stop: StopToken = .signals
    ) throws(ExportError) -> EnvironmentChange {
        // The exported variables before and after, from the same shell, so bash's own cancel out:
        // bash's own `declare -px` (builtins only, the markers NUL-ended so that no value can pass
        // for one).
        let script = """
            builtin declare -px; builtin printf '\\0MULTIPACK-EXPORT\\0'
            source "$1" >&2 || exit $?
            builtin declare -px; builtin printf '\\0MULTIPACK-EXPORT-END\\0'
            """
        let result: ProcessResult
        do {
            var command = Command("bash", ["-c", script, "bash", file], in: directory, environment: environment)
            command.owner = owner
            result = try processes.run(command, stop: stop)
        } catch {
            throw ExportError(termination: .exited(127), stderr: MultipackError.reason(error))
        }
        guard result.termination.succeeded else {
            throw ExportError(termination: result.termination, stderr: result.stderrText)
        }
        // Each dump ends with its marker, a NUL-delimited field no `declare -px` line can hold.
        let fields = result.stdout.split(separator: 0, omittingEmptySubsequences: false)
        guard fields.count > 1, fields[1].elementsEqual("MULTIPACK-EXPORT".utf8),
            let before = DeclaredVariables.parse(fields[0])
        else {
            throw ExportError(termination: result.termination, stderr: "no output from bash")
        }
        // An `exit 0` or `exec` in the export ends the shell before the second dump: its
        // environment is unknown, which must never be read as "everything was unset".
        guard fields.count > 3, fields[3].elementsEqual("MULTIPACK-EXPORT-END".utf8),
            let after = DeclaredVariables.parse(fields[2])
        else {
            throw ExportError(termination: result.termination, stderr: result.stderrText, endedEarly: true)
        }
        var change = EnvironmentChange()
        for (name, value) in after where before[name] != value && !shellOwn.contains(name) {
            change.set[name] = value
        }
        for name in before.keys where after[name] == nil && !shellOwn.contains(name) {
            change.unset.insert(name)
        }
        return change
    }

    /// A bash script that reproduces the final environment's changes against the base (SPEC §7.6).
    public static func exportScript(base: [String: String], final: [String: String]) -> String {
        exportScript(
            exported: final.filter { base[$0.key] != $0.value }, unset: base.keys.filter { final[$0] == nil })
    }

    /// A bash script that sets `exported` and unsets `unset`, in name order.
    static func exportScript(exported: [String: String], unset: [String]) -> String {
        let lines =
            exported.keys.sorted().map { "export \($0)=\(shellQuoted(exported[$0]!))" }
            + unset.sorted().map { "unset \($0)" }
        return lines.map { $0 + "\n" }.joined()
    }

    static func shellQuoted(_ value: String) -> String {
        "'" + value.replacing("'", with: "'\\''") + "'"
    }
}

public struct ExportError: Error {
    public var termination: Termination
    public var stderr: String
    /// The export ended the shell (`exit`, `exec`) before its environment could be read.
    public var endedEarly = false
}
