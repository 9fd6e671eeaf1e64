/// Everything a stage does to the world goes through the one context it is handed: the files,
/// the processes, HTTP, the clock, the log and the stop token. Production uses today's code
/// (`Files`, `Spawner`, `HTTPClient`, `ContinuousClock`, `Log`); tests hand a stage fakes and a
/// test clock (swiftly's `SwiftlyCoreContext` is the model).
public struct BuildContext: Sendable {
    public var files: any FileSystem
    public var processes: any ProcessRunner
    public var http: any HTTPDownloading
    public var clock: any BuildClock
    public var log: Log
    /// Whether multipack was asked to stop; every stage reads it here, none polls a global.
    public var stop: StopToken

    public init(
        files: any FileSystem = LocalFileSystem(), processes: any ProcessRunner = SystemProcesses(),
        http: any HTTPDownloading = HTTPClient(), clock: any BuildClock = SystemClock(), log: Log = Log(),
        stop: StopToken = .signals
    ) {
        self.files = files
        self.processes = processes
        self.http = http
        self.clock = clock
        self.log = log
        self.stop = stop
    }

    /// This process's real file system, processes, network, clock, output and stop signals.
    public static var production: BuildContext { BuildContext() }

    /// Runs a stage's processes through this context's runner, its stop and `trace`.
    func runner(trace: @escaping @Sendable (Command) -> Void = { _ in }) -> StageRunner {
        StageRunner(processes: processes, stop: stop, trace: trace)
    }

    /// How long since `start` (a reading of this context's clock), in seconds.
    func seconds(since start: Duration) -> Double { (clock.now - start).seconds }
}

/// Starts processes and waits for them (production: `Spawner`, multipack's own spawn).
public protocol ProcessRunner: Sendable {
    /// Runs `command` to its end; a stop requested through `stop` reaches it (SPEC §11).
    func run(_ command: Command, stop: StopToken) throws -> ProcessResult
}

public struct SystemProcesses: ProcessRunner {
    public init() {}
    public func run(_ command: Command, stop: StopToken) throws -> ProcessResult {
        try Spawner.run(command, stop: stop)
    }
}

/// A monotonic clock that can wait (production: `ContinuousClock`). Tests move a test clock by hand.
public protocol BuildClock: Sendable {
    /// The time since a fixed, arbitrary origin.
    var now: Duration { get }
    /// Waits `duration`; returns false, early, when `stop` is requested.
    @discardableResult func sleep(_ duration: Duration, stop: StopToken) -> Bool
}

public struct SystemClock: BuildClock {
    private static let origin = ContinuousClock.now
    public init() {}
    public var now: Duration { ContinuousClock.now - Self.origin }
    public func sleep(_ duration: Duration, stop: StopToken) -> Bool { stop.sleep(duration) }
}

/// The file operations the stages make (production: `Files`). The file-system algorithms under
/// them (extraction, the slug's tar, `.slugfilter`, the tree walks) work on real directories.
public protocol FileSystem: Sendable {
    func exists(_ path: String) -> Bool
    func isRegularFile(_ path: String) -> Bool
    func isDirectory(_ path: String) -> Bool
    func read(_ path: String) throws -> String
    /// Writes a file whole or not at all; with `trash`, the file replaced is removed there.
    func write(_ text: String, to path: String, mode: Int, replacedGoesTo trash: SerialWork?) throws
    func makeDirectory(_ path: String) throws
    /// Removes a file or a directory with everything in it; nothing there is fine.
    func remove(_ path: String)
    func move(_ from: String, to: String) throws
    func list(_ path: String) -> [String]
}

extension FileSystem {
    func write(_ text: String, to path: String, mode: Int = 0o644) throws {
        try write(text, to: path, mode: mode, replacedGoesTo: nil)
    }
}

public struct LocalFileSystem: FileSystem {
    public init() {}
    public func exists(_ path: String) -> Bool { Files.exists(path) }
    public func isRegularFile(_ path: String) -> Bool { Files.isRegularFile(path) }
    public func isDirectory(_ path: String) -> Bool { Files.isDirectory(path) }
    public func read(_ path: String) throws -> String { try Files.read(path) }
    public func write(_ text: String, to path: String, mode: Int, replacedGoesTo trash: SerialWork?) throws {
        try Files.write(text, to: path, mode: mode, replacedGoesTo: trash)
    }
    public func makeDirectory(_ path: String) throws { try Files.makeDirectory(path) }
    public func remove(_ path: String) { Files.remove(path) }
    public func move(_ from: String, to: String) throws { try Files.move(from, to: to) }
    public func list(_ path: String) -> [String] { Files.list(path) }
}
