import Glibc
import Synchronization
import Testing

@testable import MultipackKit

/// A build's trash thread: jobs run in the order they were
/// queued, off the caller's thread, and `finish` returns only once all of them have run.
@Suite struct SerialWorkTests {
    final class Trace: Sendable {
        let entries = Mutex<[(job: Int, onCaller: Bool)]>([])
    }

    @Test func jobsRunInOrderOnAnotherThreadAndFinishWaitsForThem() {
        let work = SerialWork()
        let trace = Trace()
        let caller = pthread_self()
        for job in 0..<50 {
            work.add {
                // Slow enough that the caller queues ahead of the thread.
                usleep(job % 10 == 0 ? 2000 : 0)
                trace.entries.withLock { $0.append((job, pthread_equal(pthread_self(), caller) != 0)) }
            }
        }
        work.finish()
        let entries = trace.entries.withLock { $0 }
        #expect(entries.map(\.job) == Array(0..<50))
        #expect(!entries.contains { $0.onCaller })

        // After finish, a job runs at once on the caller's thread; a second finish returns.
        work.add { trace.entries.withLock { $0.append((50, pthread_equal(pthread_self(), caller) != 0)) } }
        work.finish()
        #expect(trace.entries.withLock { $0.last.map { $0.job == 50 && $0.onCaller } } == true)
    }

    @Test func finishingWithoutJobsStartsNoThreadAndALaterJobRunsOnTheCaller() {
        let work = SerialWork()
        work.finish()
        let caller = pthread_self()
        let onCaller = Mutex(false)
        work.add { onCaller.withLock { $0 = pthread_equal(pthread_self(), caller) != 0 } }
        #expect(onCaller.withLock { $0 })
    }
}
