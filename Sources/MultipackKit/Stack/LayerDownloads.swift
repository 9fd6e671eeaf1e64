import Glibc
import Synchronization

/// The layers a pull lacks, downloaded on a few threads of their own while the caller unpacks
/// the ones already there, in order. The first failure cancels the others, in-flight downloads
/// included, and is what `wait` reports (SPEC §5).
final class LayerDownloads: Sendable {
    /// A download not started because another one failed: not a failure of its own.
    private struct Cancelled: Error {}

    private struct State {
        var results: [Int: Result<String, any Error>] = [:]
        var failure: (any Error)?
    }

    private let state = Mutex(State())
    private let cancelled = Atomic(false)
    /// Posted once per finished download.
    nonisolated(unsafe) private let posted = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)
    private let work: Mutex<BackgroundWork?> = Mutex(nil)

    init(layers: [Descriptor], store: StackStore, client: RegistryClient, width: Int, progress: PullProgress) {
        sem_init(posted, 0, 0)
        guard !layers.isEmpty else { return }
        var http = client.http
        http.isCancelled = { [self] in cancelled.load(ordering: .relaxed) }
        let downloader = RegistryClient(
            image: client.image, http: http, limits: client.limits, auth: client.auth, notice: client.notice)
        let background = BackgroundWork { [self] in
            _ = parallelMap(Array(layers.enumerated()), width: width) { _, item in
                let (slot, layer) = item
                let result: Result<String, any Error>
                if self.cancelled.load(ordering: .relaxed) {
                    result = .failure(Cancelled())
                } else {
                    result = Result {
                        try Self.fetch(layer, store: store, client: downloader) {
                            progress.update(slot, bytes: $0.bytes)
                        }
                    }
                }
                if case .success = result { progress.finish(slot) }
                self.finish(slot, result)
            }
        }
        work.withLock { $0 = background }
    }

    deinit {
        sem_destroy(posted)
        posted.deallocate()
    }

    /// Downloads one layer into the cache (a `.partial-` file renamed when checked).
    static func fetch(
        _ layer: Descriptor, store: StackStore, client: RegistryClient,
        progress: (@Sendable (DownloadProgress) -> Void)?
    ) throws -> String {
        let partial = try ScratchDirectory(
            prefix: StackStore.hex(layer.digest) + StackStore.partial, in: store.blobs, file: true)
        do {
            try client.blob(
                layer, to: partial.path, what: "layer \(layer.digest)", layer: layer.digest, progress: progress)
            let path = store.blob(layer.digest)
            try Files.move(partial.path, to: path)
            partial.unlock()
            return path
        } catch {
            partial.remove()
            throw error
        }
    }

    private func finish(_ slot: Int, _ result: Result<String, any Error>) {
        state.withLock { state in
            state.results[slot] = result
            if case .failure(let error) = result, state.failure == nil, !(error is Cancelled || error is StopRequested),
                (error as? StackError)?.kind != .stopped || !cancelled.load(ordering: .relaxed)
            {
                state.failure = error
            }
        }
        if case .failure = result { cancelled.store(true, ordering: .relaxed) }
        sem_post(posted)
    }

    /// The path of download `slot` once it is in the cache; the first failure of any download as
    /// soon as there is one.
    func wait(for slot: Int) throws -> String {
        while true {
            let (result, failure) = state.withLock { ($0.results[slot], $0.failure) }
            if let failure { throw failure }
            if let result { return try result.get() }
            try StopToken.signals.check()
            var deadline = timespec()
            clock_gettime(CLOCK_REALTIME, &deadline)
            deadline.tv_nsec += 100_000_000
            if deadline.tv_nsec >= 1_000_000_000 {
                deadline.tv_sec += 1
                deadline.tv_nsec -= 1_000_000_000
            }
            _ = sem_timedwait(posted, &deadline)
        }
    }

    /// The layers downloaded into the cache so far.
    var completed: [String] {
        state.withLock { $0.results.values.compactMap { try? $0.get() } }
    }

    /// Stops what is still downloading and waits for the threads.
    func cancelAndWait() {
        cancelled.store(true, ordering: .relaxed)
        work.withLock { $0 }?.wait()
    }
}
