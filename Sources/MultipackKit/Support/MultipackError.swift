import FoundationEssentials
import Glibc

/// Every failure multipack reports (SPEC §11): what failed, why, and what to do, printed as one
/// ` !     ` block. Its kind decides the exit code, once, at the top (`exitCode`). Errors of the
/// libraries (HTTP, archives, files, spawning, the list's parser) are mapped into one at the
/// boundary of the stage that met them (`init(_:)`).
public struct MultipackError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// Bad input or usage: exit 2.
        case usage
        /// A failed build: exit 1.
        case build
        /// Stopped by this signal: exit 128 + N, as shells report it (130 after Ctrl-C).
        case interrupted(Int32)
        /// A process multipack stands in for ended with this code (app.json's test script under
        /// `ci`, the command of `run`), passed on as it is.
        case exited(Int32)
    }

    public var kind: Kind
    public var headline: String
    public var details: [String]
    public var hint: String?
    /// A process of multipack's own (a verb a local build ran) printed this block already: only
    /// its exit code is left to give, and its first line to `--json`.
    public var printed = false

    public init(_ kind: Kind, _ headline: String, details: [String] = [], hint: String? = nil) {
        self.kind = kind
        self.headline = headline
        self.details = details
        self.hint = hint
    }

    /// Bad input or usage (exit 2).
    public static func usage(_ headline: String, details: [String] = [], hint: String? = nil) -> MultipackError {
        MultipackError(.usage, headline, details: details, hint: hint)
    }

    /// A failed build (exit 1): what failed (child, stage, url), why, and what to do.
    public static func build(_ headline: String, details: [String] = [], hint: String? = nil) -> MultipackError {
        MultipackError(.build, headline, details: details, hint: hint)
    }

    /// multipack was stopped by `signal`, `context` saying where it was ("while …").
    public static func interrupted(_ signal: Int32, _ context: String = "") -> MultipackError {
        MultipackError(
            .interrupted(signal),
            "The build was stopped by \(signalName(signal))\(context.isEmpty ? "" : " " + context); "
                + "its processes were stopped with it.")
    }

    /// A setting with a value multipack does not know (SPEC §10).
    static func unknownValue(_ name: String, _ value: String, accepted: String) -> MultipackError {
        .usage("\(name) has the value `\(value)`, which multipack does not know", hint: "Set \(name) to \(accepted).")
    }

    /// The failure a process of multipack's own printed already, known by its exit code.
    public static func printedBefore(exitCode code: Int32, headline: String?) -> MultipackError {
        let kind: Kind
        switch code {
        case 1: kind = .build
        case 2: kind = .usage
        case 129...192: kind = .interrupted(code - 128)
        default: kind = .exited(code)
        }
        var error = MultipackError(kind, headline ?? "")
        error.printed = true
        return error
    }

    public var isInterrupted: Bool {
        if case .interrupted = kind { return true }
        return false
    }

    public var exitCode: Int32 {
        switch kind {
        case .usage: return 2
        case .build: return 1
        case .interrupted(let signal): return 128 + signal
        case .exited(let code): return code
        }
    }

    /// The block's lines, credentials masked. A build failure's hint stands apart after a blank
    /// line; a usage error's follows its sentence.
    public var lines: [String] {
        var lines = [headline] + details
        if let hint { lines += kind == .usage ? [hint] : ["", hint] }
        return lines.flatMap { $0.lines.map { Masking.text(String($0)) } }
    }

    public var description: String { ([headline] + details).joined(separator: "\n") }

    /// What a library threw, as the failure it means. A `.buildpacks` line that cannot be read is
    /// bad input; anything else not yet a `MultipackError` is a failed build, said in a sentence.
    public init(_ error: any Error) {
        switch error {
        case let error as MultipackError:
            self = error
        case let stopped as StopRequested:
            self = .interrupted(stopped.signal)
        case let list as BuildpackListError:
            self = .usage(
                "Your .buildpacks file has an entry multipack cannot read.",
                details: [
                    "Line \(list.line): \(list.text)",
                    list.reason.prefix(1).uppercased() + list.reason.dropFirst() + ".",
                ])
        default:
            self = .build(Self.reason(error))
        }
    }

    /// A sentence for any error, never a Swift dump (`CocoaError(…)`, `POSIXError(…)`): the
    /// system's own words for an errno, with the path when there is one (SPEC §11).
    public static func reason(_ error: any Error) -> String {
        switch error {
        case let cocoa as CocoaError:
            let path = cocoa.filePath.map { " (\($0))" } ?? ""
            if let posix = cocoa.underlying as? POSIXError {
                return String(cString: strerror(posix.code.rawValue)) + path
            }
            return cocoaText(cocoa.code) + path
        case let posix as POSIXError:
            return String(cString: strerror(posix.code.rawValue))
        case let multipack as MultipackError:
            return multipack.headline
        default:
            let text = "\(error)"
            if text.contains("Error(") || text.contains("NSURL") || text.contains("userInfo") {
                return "an unexpected system error (\(type(of: error)))"
            }
            return text
        }
    }

    private static func cocoaText(_ code: CocoaError.Code) -> String {
        switch code {
        case .fileNoSuchFile, .fileReadNoSuchFile: return "No such file or directory"
        case .fileWriteOutOfSpace: return "No space left on device"
        case .fileReadNoPermission, .fileWriteNoPermission: return "Permission denied"
        case .fileWriteVolumeReadOnly: return "Read-only file system"
        case .fileWriteFileExists: return "File exists"
        case .fileReadInvalidFileName, .fileWriteInvalidFileName: return "File name too long or invalid"
        case .fileReadTooLarge: return "File too large"
        default: return "the file system refused (error \(code.rawValue))"
        }
    }

    /// For a verb a local build started: leaves the block's lines where the build asked
    /// (`--json` carries the failure a child process printed).
    public func record(environment: [String: String]) {
        guard let path = environment[HiddenVariable.failureFile], !path.isEmpty else { return }
        try? Files.write(lines.joined(separator: "\n") + "\n", to: path)
    }
}

extension StringProtocol {
    /// The lines, split at LF or CRLF (Swift sees "\r\n" as one Character, so splitting at "\n"
    /// alone would leave CRLF text whole). Empty lines are kept, so indices are line numbers - 1.
    var lines: [SubSequence] {
        split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
    }
}
