import Testing

@testable import MultipackKit

/// How a local build's root is chosen and shown (SPEC §15), without a registry: the choice's
/// precedence, what of a root is shown, the resolver's links, the loader's directories.
@Suite struct BuildRootTests {
    @Test func anOptionWinsOverTheEnvironmentAndAnImageOverBoth() {
        var choice = StackChoice()
        #expect(choice.rootPath([:]) == nil)
        #expect(choice.rootPath(["MULTIPACK_STACK_ROOT": " / "]) == "/")
        #expect(choice.rootPath(["MULTIPACK_STACK_ROOT": ""]) == nil)
        choice.root = "/srv/root"
        #expect(choice.rootPath(["MULTIPACK_STACK_ROOT": "/"]) == "/srv/root")
        choice.root = nil
        choice.image = "heroku/heroku:24-build"
        #expect(choice.rootPath(["MULTIPACK_STACK_ROOT": "/"]) == nil)
    }

    @Test func bothAtOnceABadImageAndABadStackAreUsageErrors() {
        var both = StackChoice()
        both.image = "heroku/heroku:24-build"
        both.root = "/"
        expectUsageError { try both.validate(caller: [:]) }
        var bad = StackChoice()
        bad.image = "Heroku Heroku"
        expectUsageError { try bad.validate(caller: [:]) }
        var stack = StackChoice()
        stack.stack = "ubuntu-24"
        expectUsageError { try stack.validate(caller: [:]) }
    }

    @Test func thisMachineShowsItsSystemDirectoriesAndAStackEverythingButWhatTheNamespaceMakes() {
        for name in ["usr", "bin", "sbin", "etc", "opt", "lib", "lib64", "libx32"] {
            #expect(MultipackKit.Sandbox.shows(name, ofRoot: "/"), "\(name)")
        }
        for name in ["home", "root", "var", "srv", "tmp", "proc", "mnt"] {
            #expect(!MultipackKit.Sandbox.shows(name, ofRoot: "/"), "\(name)")
        }
        for name in ["usr", "var", "home", "root", "srv", "boot"] {
            #expect(MultipackKit.Sandbox.shows(name, ofRoot: "/stack"))
        }
        for name in ["proc", "dev", "sys", "tmp", "app", "run"] {
            #expect(!MultipackKit.Sandbox.shows(name, ofRoot: "/stack"))
        }
    }

    /// A stack's resolver link is followed inside its root: only a target under /run (the
    /// namespace's own) gets this machine's file; `..` never climbs above `/`.
    @Test(arguments: [
        ("../run/systemd/resolve/stub-resolv.conf", "/run/systemd/resolve/stub-resolv.conf"),
        ("/run/resolvconf/resolv.conf", "/run/resolvconf/resolv.conf"),
        ("../../../../run/x", "/run/x"),
        ("./resolv.conf.real", "/etc/resolv.conf.real"),
        ("../../etc/shadow", "/etc/shadow"),
        ("..", nil),
    ])
    func aResolverLinkIsReadInsideTheRoot(text: String, expected: String?) {
        #expect(MultipackKit.Sandbox.resolve(text, from: "/etc") == expected)
    }

    @Test func ciIsSetByAnyValueButAnEmptyOrFalseOne() {
        #expect(BuildRoot.isCI(["CI": "true"]) && BuildRoot.isCI(["CI": "1"]) && BuildRoot.isCI(["CI": "woodpecker"]))
        #expect(!BuildRoot.isCI([:]) && !BuildRoot.isCI(["CI": ""]) && !BuildRoot.isCI(["CI": "false"]))
        #expect(!BuildRoot.isCI(["CI": "0"]))
    }

    @Test func theReportSaysWhichRoot() {
        let image = BuildRoot.Record(
            kind: "image", image: "heroku/heroku:24-build (registry-1.docker.io)", digest: "sha256:ab",
            directory: "/c/rootfs", stack: "heroku-24")
        #expect(
            image.yaml
                == """
                stack: "heroku-24"
                stack_root_kind: "image"
                stack_image: "heroku/heroku:24-build (registry-1.docker.io)"
                stack_image_digest: "sha256:ab"
                stack_root: "/c/rootfs"

                """)
        let machine = BuildRoot.Record(kind: "this_machine", directory: "/", offlineFallback: true, stack: "heroku-24")
        #expect(
            machine.yaml.contains(
                "stack_root_kind: \"this_machine\"\nstack_root: \"/\"\nstack_offline_fallback: true\n"))
    }

    /// This test binary's own loader and libraries: the loader first, each directory once, none
    /// under the private path.
    @Test func theLoaderAndTheDirectoriesOfThisProcesssLibraries() throws {
        let loader = try #require(HostLoader.current())
        #expect(loader.loader.hasPrefix("/") && loader.loader.contains("ld-"))
        #expect(loader.directories.first == String(loader.loader[..<loader.loader.lastIndex(of: "/")!]))
        #expect(Set(loader.directories).count == loader.directories.count)
        #expect(loader.directories.contains { Files.exists($0 + "/libc.so.6") })
        let command = loader.command(running: "/tmp/multipack/multipack")
        #expect(command.first == "/run/multipack/host/lib/0/" + loader.loader.split(separator: "/").last!)
        #expect(command.contains("--inhibit-cache") && command.last == "/tmp/multipack/multipack")
        // On this machine's root, with nothing of it shown, the loader is needed; with all, not.
        #expect(HostLoader.isNeeded(onRoot: "/", shows: { _ in false }))
        #expect(!HostLoader.isNeeded(onRoot: "/", shows: { _ in true }))
        #expect(HostLoader.isNeeded(onRoot: "/stack", shows: { _ in true }))
    }
}
