/// What the fuzzed code reads of multipack's stop handling. The real `StopToken`
/// (Process/StopToken.swift) needs the process code around it, which the fuzzers do not build;
/// nothing stops a fuzz run.
public struct StopToken: Sendable {
    public static let signals = StopToken()
    public var isRequested: Bool { false }
    public func check() throws {}
}

public struct StopRequested: Error, Sendable {
    public var signal: Int32
}

func signalName(_ signal: Int32) -> String { "\(signal)" }
