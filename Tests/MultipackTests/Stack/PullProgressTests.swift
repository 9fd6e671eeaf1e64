import Foundation
import Synchronization
import Testing

@testable import MultipackKit

@Suite struct PullProgressTests {
    final class Written: Sendable {
        let text = Mutex<[String]>([])
        var write: @Sendable (String) -> Void { { [self] line in text.withLock { $0.append(line) } } }
    }

    @Test func oneLineForEveryLayerAfterTheFirstSecondWithoutCarriageReturnsInALog() {
        let written = Written()
        let progress = PullProgress(
            label: "Downloading 2 layers", sizes: [1000, 3000], terminal: false, write: written.write)

        progress.update(0, bytes: 500)
        #expect(written.text.withLock { $0 }.isEmpty, "nothing in the first second")
        usleep(1_100_000)
        progress.update(1, bytes: 1500)
        progress.finish(0)
        progress.close()

        let lines = written.text.withLock { $0 }
        #expect(lines.count == 1, "the next line only five seconds later")
        let line = lines.first ?? ""
        #expect(line.hasPrefix("       Downloading 2 layers: 2.0 kB of 4.0 kB (50%), "), "\(line)")
        #expect(line.hasSuffix(" left\n"))
        #expect(!line.contains("\r"))
    }

    @Test func onATerminalTheLineIsRedrawnInPlaceAndEnded() {
        let written = Written()
        let progress = PullProgress(label: "Downloading 1 layer", sizes: [1000], terminal: true, write: written.write)

        usleep(1_100_000)
        progress.update(0, bytes: 250)
        progress.close()

        let lines = written.text.withLock { $0 }
        #expect(lines.count == 2)
        #expect(lines.first?.hasPrefix("\r\u{1B}[K       Downloading 1 layer: 250 B of 1.0 kB (25%)") == true)
        #expect(lines.last == "\n")
    }
}
