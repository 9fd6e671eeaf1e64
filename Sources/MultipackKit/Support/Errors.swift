import FoundationEssentials
import Glibc

/// Bad input or usage: exit code 2.
public struct UsageError: Error, CustomStringConvertible {
    public var message: String
    public var hint: String?

    public init(_ message: String, hint: String? = nil) {
        self.message = message
        self.hint = hint
    }

    init(variableProblem name: String, value: String, accepted: String) {
        self.init(
            "\(name) has the value `\(value)`, which multipack does not know", hint: "Set \(name) to \(accepted).")
    }

    public var description: String { message }
}

/// A failed build: exit code 1. Says what failed (child, stage, url), why, and what to do.
public struct BuildFailure: Error, CustomStringConvertible {
    public var headline: String
    public var details: [String]
    public var hint: String?

    public init(_ headline: String, details: [String] = [], hint: String? = nil) {
        self.headline = headline
        self.details = details
        self.hint = hint
    }

    public var description: String { ([headline] + details).joined(separator: "\n") }
}

/// The exit code and the ` !     ` block for any error that reaches the top.
public enum ErrorReport {
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

    public static func exitCode(for error: any Error) -> Int32 {
        error is UsageError || error is BuildpackListError ? 2 : 1
    }

    /// For a verb a local build started: leaves the failure's lines where the build asked
    /// (`--json` carries the failure a child process printed).
    public static func record(_ error: any Error, environment: [String: String]) {
        guard let path = environment[HiddenVariable.failureFile], !path.isEmpty else { return }
        try? Files.write(lines(for: error).joined(separator: "\n") + "\n", to: path)
    }

    public static func lines(for error: any Error) -> [String] {
        var lines: [String]
        switch error {
        case let failure as BuildFailure:
            lines = [failure.headline] + failure.details + (failure.hint.map { ["", $0] } ?? [])
        case let usage as UsageError:
            lines = [usage.message] + (usage.hint.map { [$0] } ?? [])
        case let list as BuildpackListError:
            lines = [
                "Your .buildpacks file has an entry multipack cannot read.",
                "Line \(list.line): \(list.text)",
                list.reason.prefix(1).uppercased() + list.reason.dropFirst() + ".",
            ]
        default:
            lines = [reason(error)]
        }
        return lines.flatMap { $0.lines.map { Masking.text(String($0)) } }
    }
}

extension StringProtocol {
    /// The lines, split at LF or CRLF (Swift sees "\r\n" as one Character, so splitting at "\n"
    /// alone would leave CRLF text whole). Empty lines are kept, so indices are line numbers - 1.
    var lines: [SubSequence] {
        split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
    }
}
