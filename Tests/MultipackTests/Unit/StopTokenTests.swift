import Foundation
import Glibc
import Testing

@testable import MultipackKit

/// A stop reaches a running child through the token a stage is given (SPEC §11), and the token's
/// descriptor and waits see it at once.
@Suite struct StopTokenTests {
    @Test func aManualStopEndsARunningChildWithTheSignal() throws {
        let manual = ManualStop()
        let stop = StopToken(manual)
        Thread.detachNewThread {
            usleep(200_000)
            manual.request(SIGINT)
        }
        let result = try Spawner.run(Command("sleep", ["30"], environment: [:]), stop: stop)
        #expect(result.termination == .signaled(SIGINT))
        #expect(stop.signal == SIGINT)
    }

    @Test func aChildThatIgnoresTheStopIsKilledAfterTheGrace() throws {
        let temp = try TempDir("stop")
        let ready = temp.path + "/ready"
        let manual = ManualStop()
        Thread.detachNewThread {
            while !FileManager.default.fileExists(atPath: ready) { usleep(10_000) }
            manual.request(SIGTERM)
        }
        let result = try Spawner.run(
            Command("bash", ["-c", "trap '' TERM; touch \"$0\"; sleep 30", ready], environment: [:]),
            stop: StopToken(manual))
        #expect(result.termination == .signaled(SIGKILL))
    }

    @Test func theDescriptorPollsReadableOnlyOnceAStopIsRequested() {
        let manual = ManualStop()
        let stop = StopToken(manual)
        var poll = pollfd(fd: stop.descriptor, events: Int16(POLLIN), revents: 0)
        #expect(Glibc.poll(&poll, 1, 0) == 0)
        #expect(!stop.isRequested)
        manual.request(SIGHUP)
        manual.request(SIGTERM)
        #expect(Glibc.poll(&poll, 1, 0) == 1)
        // The first signal counts; SIGQUIT's children would get SIGTERM.
        #expect(stop.signal == SIGHUP)
        #expect(stop.forwardedSignal == SIGHUP)
        let error = #expect(throws: MultipackError.self) { try stop.check("while testing") }
        #expect(error?.kind == .interrupted(SIGHUP) && error?.exitCode == 129)
        #expect(error?.headline == "The build was stopped by SIGHUP while testing; its processes were stopped with it.")
    }

    @Test func aWaitEndsWhenAStopIsRequested() {
        let manual = ManualStop()
        manual.request()
        #expect(StopToken(manual).sleep(.seconds(3600)) == false)
        #expect(StopToken(ManualStop()).sleep(.milliseconds(1)) == true)
    }
}
