/// Who a stage's process runs for, as the build's messages name it.
enum StageOwner: Sendable {
    /// A child buildpack: its `bin/detect`, `bin/compile`, `bin/release`, `bin/test`.
    case child(ChildName)
    /// The app's own `bin/pre_compile` or `bin/post_compile`.
    case hook(String)
    /// One of multipack's own verbs, run by a local build; it prints its failures itself and
    /// leaves their first line in `failureFile`.
    case verb(failureFile: String)
    /// Anything else the build runs, named as the log names it (`app.json's test script`).
    case other(String)

    /// As the warning about processes left running names it.
    func name(_ stage: String) -> String {
        switch self {
        case .child(let child): return "Buildpack \(child.label) \(child.displayName) (bin/\(stage))"
        case .hook(let name): return "The app's bin/\(name)"
        case .verb: return "multipack \(stage)"
        case .other(let name): return name
        }
    }

    /// The failure when the process could not be started.
    func notStarted(_ stage: String, reason: String) -> MultipackError {
        switch self {
        case .child(let child):
            return child.failure(stage: stage, "bin/\(stage) could not be started: \(reason).")
        case .hook(let name):
            return .build("The app's bin/\(name) could not be started: \(reason)")
        case .verb, .other:
            return .build("\(name(stage)) could not be started: \(reason)")
        }
    }

    /// The build's interruption while the process ran (`result`: how it ended).
    func stopped(by signal: Int32, in stage: String, _ result: ProcessResult) -> MultipackError {
        switch self {
        case .child(let child):
            return .interrupted(signal, child.whileIn(stage))
        case .hook(let name):
            return .interrupted(signal, "while the app's bin/\(name) was running")
        case .verb(let failureFile):
            // A verb that ended by itself said where it stopped; one killed outright could not.
            guard case .exited(let code) = result.termination else {
                return .interrupted(signal, "while multipack's \(stage) was running")
            }
            return .printedBefore(
                exitCode: code == 0 ? 128 + signal : code,
                headline: (try? Files.read(failureFile))?.lines.first.map(String.init))
        case .other(let name):
            return .interrupted(signal, "while \(name) was running")
        }
    }
}

/// Runs one stage's process for its owner: the one place where a process is started, the build's
/// stop checked, and how it ended handed back (`ProcessResult`: an exit code or a signal, with
/// what it printed when captured). A stop requested meanwhile is thrown, naming the owner and stage.
struct StageRunner: Sendable {
    var processes: any ProcessRunner
    var stop: StopToken
    /// `BUILDPACK_XTRACE`: prints each command before it runs.
    var trace: @Sendable (Command) -> Void = { _ in }

    func run(_ command: Command, owner: StageOwner, stage: String) throws(MultipackError) -> ProcessResult {
        var command = command
        command.owner = owner.name(stage)
        trace(command)
        let result: ProcessResult
        do {
            result = try processes.run(command, stop: stop)
        } catch {
            throw owner.notStarted(stage, reason: MultipackError.reason(error))
        }
        if let signal = stop.signal { throw owner.stopped(by: signal, in: stage, result) }
        return result
    }
}

extension ProcessResult {
    /// This result when the process exited 0; otherwise the failure `failure` makes of how it ended.
    func succeeded(or failure: (Termination) -> MultipackError) throws(MultipackError) -> ProcessResult {
        guard termination.succeeded else { throw failure(termination) }
        return self
    }
}
