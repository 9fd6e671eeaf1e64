import FoundationEssentials
import Glibc

/// How `multipack run` starts what it runs (SPEC §15, §17), in the dyno's namespace or, without
/// one, on this machine: one process whose output is its own; several process types together
/// (`Formation`); or a one-off command with a terminal of its own. Several processes and a
/// terminal need a process of multipack's inside the namespace: `multipack dyno JOB` (`DynoJob`),
/// which runs the formation there, or makes the pty from the namespace's own devpts and sends its
/// master out for this process to relay.
struct DynoLaunch {
    /// nil: no namespace here.
    var sandbox: Sandbox?
    /// `/tmp` inside: where the job file goes.
    var tmp: String
    var context: BuildContext
    /// multipack's own lines (stderr).
    var log: Log
    /// How long the processes have after SIGTERM before SIGKILL (Heroku's 30 s, or `--grace`).
    var grace: Duration
    /// Without a namespace, the ids a root caller's processes take (SPEC §15); nil: the caller's.
    var runAs: BuildUser?

    /// The job file inside the namespace, and where multipack's binary is bound there.
    static let jobInside = "/tmp/.multipack-dyno.json"
    static let binaryInside = "/tmp/.multipack/multipack"

    /// One process whose output is its own: a named process type, or a one-off command without a
    /// terminal (its input is the caller's: `echo hi | multipack run APP -- cat`).
    func single(_ member: Formation.Member, stdin: Command.Input) throws -> Int32 {
        var command = member.command
        command.stdin = stdin
        command.ownSession = true
        command.grace = grace
        if let sandbox {
            command = sandbox.wrap(command)
        } else if let runAs {
            command.namespace = NamespacePlan(idsOf: runAs)
        }
        return try Sandbox.run(command, in: context).termination.exitCode
    }

    /// Several process types together, their lines prefixed.
    func formation(_ members: [Formation.Member], colors: Bool) throws -> Int32 {
        guard let sandbox else {
            var formation = Formation(members: members, grace: grace, colors: colors, stop: context.stop, notes: log)
            formation.runAs = runAs
            return try formation.run()
        }
        let job = DynoJob(members: members, graceSeconds: Int(grace.components.seconds), colors: colors)
        return try inside(job, sandbox: sandbox, passing: nil)
    }

    /// A one-off command on a terminal of its own, while the caller's terminal is in raw mode and
    /// relays to it; `window` is the caller's size.
    func withTerminal(_ member: Formation.Member, window: WindowSize?) throws -> Int32 {
        guard let sandbox else {
            let pty = try Pty.open()
            window?.apply(to: pty.master)
            let relay = TerminalRelay(.given(pty.master))
            defer { relay.finish() }
            var command = member.command
            command.terminal = pty.slave
            command.grace = grace
            if let runAs { command.namespace = NamespacePlan(idsOf: runAs) }
            return try context.processes.run(command, stop: context.stop).termination.exitCode
        }
        let (outerEnd, innerEnd) = try DescriptorPassing.pair()
        defer {
            close(outerEnd)
            close(innerEnd)
        }
        let relay = TerminalRelay(.receivedOver(socket: outerEnd))
        defer { relay.finish() }
        let job = DynoJob(oneOff: member, window: window, graceSeconds: Int(grace.components.seconds))
        return try inside(job, sandbox: sandbox, passing: innerEnd)
    }

    /// Runs `multipack dyno` with `job` inside the namespace. The job file holds the config vars:
    /// the user's alone, and removed by the process that reads it.
    private func inside(_ job: DynoJob, sandbox: Sandbox, passing descriptor: Int32?) throws -> Int32 {
        let file = tmp + "/" + String(Self.jobInside.dropFirst("/tmp/".count))
        try Files.write(
            String(decoding: try JSONEncoder().encode(job), as: UTF8.self), to: file, mode: LocalState.privateFileMode)
        defer { Files.remove(file) }
        var sandbox = sandbox
        let multipack = sandbox.bindMultipack(at: Self.binaryInside)
        var command = Command(
            multipack[0], multipack.dropFirst() + ["dyno", Self.jobInside], in: "/app",
            environment: ["PATH": HerokuEnvironment.path, "HOME": "/app", "LANG": HerokuEnvironment.lang],
            stdout: .inherit, stderr: .inherit)
        command.stopsItself = true
        command.ownSession = true
        command.passedDescriptor = descriptor
        // The processes get the grace; multipack inside a moment more to stop them and end.
        command.grace = grace + .seconds(5)
        return try Sandbox.run(sandbox.wrap(command), in: context).termination.exitCode
    }
}

extension Formation.Member {
    var command: Command {
        Command(executable, arguments, in: directory, environment: environment, stdout: .inherit, stderr: .inherit)
    }
}

/// What `multipack run` hands the `multipack dyno` it starts inside the dyno's namespace (the
/// hidden verb `multipack dyno JOB_FILE`): the process types to run together, or a one-off
/// command that gets a terminal of its own there, whose master goes out through descriptor 3.
public struct DynoJob: Codable, Sendable {
    var members: [Formation.Member] = []
    var oneOff: Formation.Member?
    var window: WindowSize?
    var graceSeconds = 30
    var colors = false

    /// Runs the job in the file (and removes it: it holds the config vars); returns the exit code.
    public static func run(file: String, invocation: Invocation) throws -> Int32 {
        let text = try? Files.read(file)
        Files.remove(file)
        guard let text, let job = try? JSONDecoder().decode(DynoJob.self, from: Data(text.utf8)) else {
            throw MultipackError.usage("multipack dyno takes the job multipack run gives it.")
        }
        let grace = Duration.seconds(job.graceSeconds)
        let notes = Log { text, _ in invocation.log.write(text, 2) }
        guard let member = job.oneOff else {
            return try Formation(
                members: job.members, grace: grace, colors: job.colors, stop: invocation.stop, notes: notes
            ).run()
        }
        // The namespace's own devpts: the command sees its own terminal and none of the caller's.
        let pty = try Pty.open()
        job.window?.apply(to: pty.master)
        defer { close(pty.master) }
        try DescriptorPassing.send(pty.master, over: 3)
        close(3)
        var command = member.command
        command.terminal = pty.slave
        command.grace = grace
        return try invocation.context.processes.run(command, stop: invocation.stop).termination.exitCode
    }
}
