/// Reads an `export` file without starting bash when every line is a plain `export NAME=VALUE`
/// or `unset NAME` whose value is quoted text and `$NAME`/`${NAME}` of variables already set:
/// what nearly every buildpack writes. Anything else (commands, `$(...)`, defaults, escapes,
/// conditionals) returns nil and is sourced by bash. Starting bash costs ~4 ms per child, close to
/// half of the 10 ms overhead budget; the two paths are checked against each other in the tests.
enum SimpleExport {
    static func parse(_ text: String, environment: [String: String]) -> EnvironmentChange? {
        // bash keeps a CR in the value; leave such files to it.
        if text.unicodeScalars.contains("\r") { return nil }
        var env = environment
        var unset = Set<String>()
        var touched = Set<String>()
        for rawLine in text.lines {
            let line = rawLine.trimmingBlanks()
            if line.isEmpty || line.first == "#" { continue }
            if line.hasPrefix("unset ") {
                let names = line.dropFirst(6).split(separator: " ")
                guard !names.isEmpty, names.allSatisfy(isName) else { return nil }
                for name in names {
                    env[String(name)] = nil
                    unset.insert(String(name))
                }
                continue
            }
            guard line.hasPrefix("export ") else { return nil }
            let assignment = line.dropFirst(7).trimmingBlanks()
            guard let equals = assignment.firstIndex(of: "="), isName(assignment[..<equals]) else { return nil }
            let name = String(assignment[..<equals])
            guard let value = expand(assignment[assignment.index(after: equals)...], env) else { return nil }
            env[name] = value
            unset.remove(name)
            touched.insert(name)
        }
        var change = EnvironmentChange()
        for name in touched where env[name] != environment[name] { change.set[name] = env[name] }
        change.unset = unset.filter { environment[$0] != nil }
        return change
    }

    static func isName(_ text: Substring) -> Bool {
        guard let first = text.first, first == "_" || (first.isASCII && first.isLetter) else { return false }
        return text.allSatisfy { $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }
    }

    /// The value of an assignment's right-hand side, or nil when bash's rules go beyond ours.
    static func expand(_ word: Substring, _ env: [String: String]) -> String? {
        var out = ""
        var rest = word
        // A leading ~ is expanded by bash in assignments.
        if rest.first == "~" { return nil }
        while let c = rest.first {
            switch c {
            case "'":
                guard let close = rest.dropFirst().firstIndex(of: "'") else { return nil }
                out += rest[rest.index(after: rest.startIndex)..<close]
                rest = rest[rest.index(after: close)...]
            case "\"":
                rest = rest.dropFirst()
                var closed = false
                while let d = rest.first {
                    if d == "\"" {
                        rest = rest.dropFirst()
                        closed = true
                        break
                    }
                    if d == "\\" || d == "`" { return nil }
                    if d == "$" {
                        guard let (value, after) = variable(rest, env) else { return nil }
                        out += value
                        rest = after
                        continue
                    }
                    out.append(d)
                    rest = rest.dropFirst()
                }
                if !closed { return nil }
            case "$":
                guard let (value, after) = variable(rest, env) else { return nil }
                out += value
                rest = after
            default:
                guard c.isASCII, c.isLetter || c.isNumber || "/._:,+=@%-".contains(c) else { return nil }
                out.append(c)
                rest = rest.dropFirst()
            }
        }
        return out
    }

    /// `$NAME` or `${NAME}` of a variable that is set; anything else is bash's to do.
    static func variable(_ text: Substring, _ env: [String: String]) -> (String, Substring)? {
        var rest = text.dropFirst()
        let braced = rest.first == "{"
        if braced { rest = rest.dropFirst() }
        let name = rest.prefix { $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }
        guard isName(name), let value = env[String(name)] else { return nil }
        rest = rest[name.endIndex...]
        if braced {
            guard rest.first == "}" else { return nil }
            rest = rest.dropFirst()
        }
        return (value, rest)
    }
}
