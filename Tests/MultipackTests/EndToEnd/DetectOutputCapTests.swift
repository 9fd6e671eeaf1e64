import Foundation
import Testing

/// A detect that prints 200 MB costs a bounded amount of memory: the capture keeps 1 MB.
@Suite struct DetectOutputCapTests {
    @Test func twoHundredMegabytesOfDetectOutputStayBounded() throws {
        let temp = try TempDir("detect-flood")
        try temp.write(
            "flood/bin/detect", "#!/bin/sh\necho Flood\nhead -c 209715200 /dev/zero | tr '\\0' x\n", executable: true)
        try temp.write("flood/bin/compile", "#!/bin/sh\nexit 0\n", executable: true)
        let app = try App(nil, in: temp, buildpacks: temp.path + "/flood\n")
        let mp = try Multipack(in: temp)
        let result = try Shell.run(
            "/usr/bin/time", ["-f", "maxrss_kb=%M", mp.dir + "/bin/compile", app.build, app.cache, app.env],
            environment: Multipack.environment(["TMPDIR": temp.sub("tmp")]))
        #expect(result.status == 0, "\(result.all.suffix(2000))")
        #expect(result.all.contains("Flood"))
        let line = try #require(result.stderr.split(separator: "\n").last { $0.hasPrefix("maxrss_kb=") })
        let kilobytes = try #require(Int(line.dropFirst("maxrss_kb=".count)))
        // Before the cap: 794 MB. Generous: the Swift runtime alone is a few MB.
        #expect(kilobytes < 150_000, "max RSS \(kilobytes) KB")
    }
}
