/// The tree the extractor has written so far, one node per path, looked up one component at a
/// time: every check (type collisions, writing through a symlink, where a symlink leads) costs one
/// step per component, so no path of any depth makes it more than linear (SPEC §6).
struct PathTree {
    enum Kind: Equatable {
        case directory, file
        case symlink(String)

        var noun: String {
            switch self {
            case .directory: return "a directory"
            case .file: return "a file"
            case .symlink: return "a symlink"
            }
        }
    }

    /// A place a path leads to: an existing node, and how many components below it lead into
    /// names that do not exist (yet).
    struct Position: Equatable {
        var node: Int
        var missing: Int = 0
    }

    enum Resolution: Equatable {
        case inside(Position)
        case outside
        case loop
    }

    static let root = 0
    /// The kernel gives up after 40 symlinks in one lookup (ELOOP); so do we.
    static let maxHops = 40

    private struct Key: Hashable {
        var parent: Int
        var name: String
    }

    private var children: [Key: Int] = [:]
    private(set) var parents: [Int] = [-1]
    private var names: [String] = [""]
    private(set) var kinds: [Kind] = [.directory]
    /// Symlink nodes in the order they were made.
    private(set) var symlinks: [Int] = []

    func name(of node: Int) -> String { names[node] }

    /// The way down to the directory `node` from its nearest ancestor that `isOpen` (or the
    /// root): that ancestor, and the nodes below it to open in turn, top first.
    func way(to node: Int, from isOpen: (Int) -> Bool) -> (top: Int, below: [Int]) {
        var below: [Int] = []
        var top = node
        while top != Self.root, !isOpen(top) {
            below.append(top)
            top = parents[top]
        }
        return (top, below.reversed())
    }

    func child(of node: Int, named name: String) -> Int? {
        children[Key(parent: node, name: name)]
    }

    /// Adds `name` below `parent`, or changes the kind of the node already there.
    @discardableResult
    mutating func set(_ name: String, in parent: Int, to kind: Kind) -> Int {
        let key = Key(parent: parent, name: name)
        let node: Int
        if let existing = children[key] {
            node = existing
            kinds[node] = kind
        } else {
            node = kinds.count
            children[key] = node
            parents.append(parent)
            names.append(name)
            kinds.append(kind)
        }
        if case .symlink = kind { symlinks.append(node) }
        return node
    }

    /// Where `target` leads when followed from the directory `start`, through the archive's own
    /// symlinks as the kernel would follow them.
    func resolve(_ target: String, from start: Position) -> Resolution {
        var hops = 0
        return resolve(target, from: start, hops: &hops)
    }

    /// Where the symlink `node` leads, from the directory that holds it.
    func resolveSymlink(_ node: Int) -> Resolution {
        guard case .symlink(let target) = kinds[node] else { return .inside(Position(node: node)) }
        return resolve(target, from: Position(node: parents[node]))
    }

    // The recursion is at most `maxHops` deep: each level follows one more symlink.
    private func resolve(_ target: String, from start: Position, hops: inout Int) -> Resolution {
        if target.hasPrefix("/") { return .outside }
        var at = start
        for part in target.split(separator: "/") where part != "." {
            if part == ".." {
                if at.missing > 0 {
                    at.missing -= 1
                } else if at.node == Self.root {
                    return .outside
                } else {
                    at.node = parents[at.node]
                }
                continue
            }
            if at.missing > 0 {
                at.missing += 1
                continue
            }
            guard let next = child(of: at.node, named: String(part)) else {
                at.missing = 1
                continue
            }
            if case .symlink(let link) = kinds[next] {
                hops += 1
                guard hops <= Self.maxHops else { return .loop }
                let resolved = resolve(link, from: at, hops: &hops)
                guard case .inside(let position) = resolved else { return resolved }
                at = position
            } else {
                at.node = next
            }
        }
        return .inside(at)
    }
}
