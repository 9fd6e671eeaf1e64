import Glibc
import Synchronization

/// Runs `body` for every item on at most `width` threads and returns the results in input order.
/// The work is blocking (git, HTTP), so it gets threads of its own rather than the cooperative pool.
func parallelMap<T: Sendable, R: Sendable>(
    _ items: [T], width: Int, _ body: @escaping @Sendable (Int, T) -> R
) -> [R] {
    guard items.count > 1, width > 1 else { return items.enumerated().map { body($0.offset, $0.element) } }
    let next = Mutex(0)
    let results = Mutex<[R?]>(Array(repeating: nil, count: items.count))
    runOnThreads(min(width, items.count)) {
        while true {
            let index = next.withLock { value -> Int in
                defer { value += 1 }
                return value
            }
            guard index < items.count else { return }
            let result = body(index, items[index])
            results.withLock { $0[index] = result }
        }
    }
    return results.withLock { $0.map { $0! } }
}

private final class ThreadWork: Sendable {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}

/// Runs `body` on `count` threads at once and waits for all of them.
private func runOnThreads(_ count: Int, _ body: @escaping @Sendable () -> Void) {
    var threads: [pthread_t] = []
    for _ in 0..<count {
        if let thread = startThread(body) { threads.append(thread) }
    }
    if threads.isEmpty { body() }
    for thread in threads { pthread_join(thread, nil) }
}

/// Work started now on a thread of its own, to overlap with what the caller does meanwhile (a
/// stack image's layer downloads while the layers before are unpacked).
final class BackgroundWork: Sendable {
    private final class Failure: Sendable {
        let error = Mutex<(any Error)?>(nil)
    }
    private let failure = Failure()
    /// The thread until it is joined; joined under the lock, so a second waiter waits for it too.
    private let thread: Mutex<pthread_t?>

    init(_ body: @escaping @Sendable () throws -> Void) {
        let failure = self.failure
        let run: @Sendable () -> Void = {
            do { try body() } catch { failure.error.withLock { $0 = error } }
        }
        let started = startThread(run)
        thread = Mutex(started)
        if started == nil { run() }
    }

    /// Waits until the work is done; waiting again returns at once.
    func wait() {
        thread.withLock { thread in
            if let running = thread { pthread_join(running, nil) }
            thread = nil
        }
    }

    /// Waits, then throws what the work threw.
    func result() throws {
        wait()
        if let error = failure.error.withLock({ $0 }) { throw error }
    }
}

/// A thread running `body`, or nil when none could be started.
private func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t? {
    var thread = pthread_t()
    let context = Unmanaged.passRetained(ThreadWork(body)).toOpaque()
    let created = pthread_create(
        &thread, nil,
        { context in
            Unmanaged<ThreadWork>.fromOpaque(context!).takeRetainedValue().body()
            return nil
        }, context)
    guard created == 0 else {
        Unmanaged<ThreadWork>.fromOpaque(context).release()
        return nil
    }
    return thread
}

/// Jobs run in order on one thread of their own, started with the first job: a build's trash
/// (what it replaces and leaves is removed there, off its path). Its owner calls `finish` once,
/// after the last `add`: until then the thread waits for more.
public final class SerialWork: Sendable {
    private struct State {
        var queue: [@Sendable () -> Void] = []
        var closed = false
        var thread: pthread_t?
        var noThread = false
    }
    private let state = Mutex(State())
    /// Posted once per job queued, and once by `finish`.
    nonisolated(unsafe) private let posted = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)

    init() { sem_init(posted, 0, 0) }

    deinit {
        sem_destroy(posted)
        posted.deallocate()
    }

    /// Queues `job` after those queued before it; once finished, or without a thread, it runs now.
    func add(_ job: @escaping @Sendable () -> Void) {
        let queued = state.withLock { state -> Bool in
            guard !state.closed, !state.noThread else { return false }
            if state.thread == nil {
                state.thread = startThread { [self] in drain() }
                state.noThread = state.thread == nil
                if state.noThread { return false }
            }
            state.queue.append(job)
            return true
        }
        if queued { sem_post(posted) } else { job() }
    }

    /// Waits for every job queued; later ones run on the caller's thread.
    func finish() {
        let thread = state.withLock { state -> pthread_t? in
            state.closed = true
            defer { state.thread = nil }
            return state.thread
        }
        guard let thread else { return }
        sem_post(posted)
        pthread_join(thread, nil)
    }

    /// One job per post, in order; the post that finds nothing queued is `finish`'s.
    private func drain() {
        while true {
            while sem_wait(posted) != 0 && errno == EINTR {}
            guard let job = state.withLock({ $0.queue.isEmpty ? nil : $0.queue.removeFirst() }) else { return }
            job()
        }
    }
}
