import Glibc

/// What the user asked a local build or run to stand on (SPEC §15), from the command line and
/// the environment. One of three ways:
/// - `--stack-image REF`: that image, pulled into the shared cache (or found there);
/// - `--stack-root DIR|TARBALL`, or `MULTIPACK_STACK_ROOT`: a root the user made; `/` is this
///   machine's own system;
/// - neither: the stack's own image, `heroku/heroku:<N>-build` for `build` and `ci`,
///   `heroku/heroku:<N>` for `run`, `<N>` from `--stack`.
public struct StackChoice: Sendable, Equatable {
    /// `--stack`: the stack the build is told it runs on, and whose image is the default.
    public var stack = "heroku-24"
    /// `--stack-image REF`.
    public var image: String?
    /// `--stack-root DIR|TARBALL`.
    public var root: String?

    public init() {}

    /// `MULTIPACK_STACK_ROOT`: `--stack-root` for every build and run that names no root or image
    /// (`/` on a machine that must never pull).
    public static let rootVariable = "MULTIPACK_STACK_ROOT"

    /// The root `--stack-root` or, failing that, `MULTIPACK_STACK_ROOT` names.
    func rootPath(_ caller: [String: String]) -> String? {
        if let root { return root }
        guard image == nil, let value = caller[Self.rootVariable].map(Settings.trimmed), !value.isEmpty else {
            return nil
        }
        return value
    }

    /// Both at once is a usage error (exit 2), said before anything runs.
    func validate(caller: [String: String]) throws(MultipackError) {
        if image != nil, root != nil {
            throw MultipackError.usage(
                "--stack-image and --stack-root both name the root to build on; give one.",
                hint:
                    "--stack-image REF for an image, --stack-root DIR|TARBALL for a root you made, --stack-root / for this machine."
            )
        }
        if let image { _ = try ImageReference(parsing: image, environment: caller) }
        _ = try ImageReference.forStack(stack, role: .build, environment: caller)
    }
}

/// The root a local build or run stands on, decided once by `choose` and used by `build`, `ci`
/// and `run` alike: a stack image's unpacked root, a stack root of the user's, or this machine's
/// own system. An image is kept (`StackImage`'s lease) as long as this value lives, so that
/// `stack prune` leaves it alone while the build uses it.
struct BuildRoot {
    /// The directory that is `/` inside (`/` for this machine).
    var directory: String
    /// The Heroku stack the root's `/etc/os-release` names (Ubuntu 24.04 is heroku-24); nil when
    /// it names none, and then `--stack` says.
    var stack: String?
    /// What the report and `--json` say about it.
    var record: Record
    /// The image, held while the root is in use.
    private(set) var image: StackImage?

    /// Which root a build used: `build --json`'s `root`, and the kept build's (`multipack report`,
    /// `run APP`).
    struct Record: Codable, Sendable, Equatable {
        /// `image`, `stack_root` or `this_machine`.
        var kind: String
        /// The image as it was named, with its registry: `heroku/heroku:24-build (registry-1.docker.io)`.
        var image: String?
        /// The image's linux/amd64 manifest digest.
        var digest: String?
        var directory: String
        /// This machine, because the stack's image could not be had offline.
        var offlineFallback: Bool?
        /// The stack the build was told (`STACK`): what `run APP` takes its image's `<N>` from.
        var stack: String

        /// Flat YAML lines for `multipack report`.
        var yaml: String {
            var lines = ["stack: \(YAML.quoted(stack))", "stack_root_kind: \(YAML.quoted(kind))"]
            if let image { lines.append("stack_image: \(YAML.quoted(image))") }
            if let digest { lines.append("stack_image_digest: \(YAML.quoted(digest))") }
            lines.append("stack_root: \(YAML.quoted(directory))")
            if offlineFallback == true { lines.append("stack_offline_fallback: true") }
            return lines.joined(separator: "\n") + "\n"
        }
    }

    static let thisMachine = "this_machine"

    /// Decides the root for `choice`: `role` says which of the stack's images is the default;
    /// `strict` (`ci`, or `CI` set) makes a default image that cannot be had offline a failure
    /// rather than this machine; `unavailable` says why no namespace can be made here, if none can
    /// (then only this machine will do, and a named image or root is refused); `running` says a
    /// command runs there (`run` with no app stands on the build image, but builds nothing).
    static func choose(
        _ choice: StackChoice, role: ImageReference.StackRole, strict: Bool, unavailable: String?,
        caller: [String: String], log: Log, running: Bool = false
    ) throws -> BuildRoot {
        let namespaces = unavailable == nil
        let doing = role == .run || running ? "Running" : "Building"
        try choice.validate(caller: caller)
        let rootPath = choice.rootPath(caller)
        let isThisMachine = rootPath.map { Files.absolute($0) == "/" || StackRoot.realPath($0) == "/" } ?? false
        if let rootPath, !isThisMachine {
            guard namespaces else {
                throw MultipackError.usage(
                    "--stack-root needs a user namespace, and this machine gives none: \(unavailable ?? "").",
                    hint:
                        "Install bubblewrap (apt-get install bubblewrap) and allow user namespaces, or use --stack-root /."
                )
            }
            let root = try StackRoot.prepare(rootPath, caller: caller, log: log, doing: doing)
            return BuildRoot(
                directory: root.directory, stack: root.stack,
                record: Record(kind: "stack_root", directory: root.directory, stack: root.stack ?? choice.stack))
        }
        if isThisMachine {
            let via = choice.root == nil ? " (\(StackChoice.rootVariable)=/)" : ""
            log.step(
                "\(doing) on this machine's own system\(via): its /usr, /bin, /sbin, /lib*, /etc and /opt, read-only")
            return .machine(stack: choice.stack, fallback: false)
        }
        guard namespaces else {
            if choice.image != nil {
                throw MultipackError.usage(
                    "--stack-image needs a user namespace, and this machine gives none: \(unavailable ?? "").",
                    hint: "Install bubblewrap (apt-get install bubblewrap) and allow user namespaces.")
            }
            return .machine(stack: choice.stack, fallback: false)
        }
        return try pulled(choice, role: role, strict: strict, caller: caller, log: log, doing: doing)
    }

    /// The image `choice` names, or the stack's own for `role`, pulled (or found in the cache);
    /// this machine instead when the stack's own cannot be reached and `strict` is false.
    private static func pulled(
        _ choice: StackChoice, role: ImageReference.StackRole, strict: Bool, caller: [String: String], log: Log,
        doing: String
    ) throws -> BuildRoot {
        let named = try choice.image.map { text throws(MultipackError) in
            try ImageReference(parsing: text, environment: caller)
        }
        let reference = try named ?? ImageReference.forStack(choice.stack, role: role, environment: caller)
        let fallsBack = named == nil && !strict
        do {
            var puller = try StackPuller(environment: caller, log: log)
            puller.limits.retriesUnreachableRegistry = !fallsBack
            let image = try puller.image(reference)
            let stack = StackRoot.stackName(image.root + "/etc/os-release")
            log.step("\(doing) on the stack image \(reference.shown)")
            log.detail("\(image.digest), unpacked in \(image.root)")
            return BuildRoot(
                directory: image.root, stack: stack,
                record: Record(
                    kind: "image", image: reference.shown, digest: image.digest, directory: image.root,
                    stack: stack ?? choice.stack),
                image: image)
        } catch let error as StackError {
            if error.kind == .stopped, let signal = StopToken.signals.signal {
                throw MultipackError.interrupted(signal, "while the stack image was pulled")
            }
            // Offline with nothing in the cache: this machine's own system, said once.
            if fallsBack, error.kind == .unreachable {
                log.warning(
                    "The stack image \(reference.shown) cannot be reached and is not in the cache: \(doing.lowercased()) on this "
                        + "machine's own system instead (--stack-root /), which is not Heroku's.\n"
                        + "To \(doing == "Running" ? "run" : "build") on the stack's image, pull it once while online: "
                        + CommandName.line(["stack", "pull", reference.written]))
                return .machine(stack: choice.stack, fallback: true)
            }
            throw MultipackError.build(
                error.headline, details: error.details,
                hint: [
                    error.hint,
                    "`\(CommandName.line(["stack", "pull", reference.written]))` fetches it ahead of a build"
                        + (named == nil ? "; --stack-root / builds on this machine's own system instead." : "."),
                ].compactMap { $0 }.joined(separator: "\n"))
        }
    }

    private static func machine(stack: String, fallback: Bool) -> BuildRoot {
        BuildRoot(
            directory: "/", stack: nil,
            record: Record(
                kind: thisMachine, directory: "/", offlineFallback: fallback ? true : nil, stack: stack))
    }

    /// `CI` set in the environment (any value but an empty one, `0` or `false`), as CI services set it.
    static func isCI(_ caller: [String: String]) -> Bool {
        guard let value = caller["CI"]?.lowercased() else { return false }
        return !["", "0", "false", "no", "off"].contains(value)
    }
}
