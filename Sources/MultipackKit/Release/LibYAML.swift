import CMultipackYaml
import Glibc

/// libyaml's entry points, loaded with dlopen on the first parse.
private struct YAMLLibrary: @unchecked Sendable {
    // Filled once by the loader and never changed, so sharing it between threads is safe.
    let api: UnsafePointer<multipack_yaml>

    static let shared: Result<YAMLLibrary, YAMLError> = {
        var error = [CChar](repeating: 0, count: 512)
        guard let api = multipack_yaml_load(&error, error.count) else {
            let reason = String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            return .failure(
                YAMLError(
                    line: 0,
                    message:
                        "reading release YAML needs libyaml (Debian: libyaml-0-2), which could not be loaded: \(reason)"
                ))
        }
        return .success(YAMLLibrary(api: api))
    }()
}

/// Builds a `YAMLNode` from libyaml's events with an explicit stack: no recursion, so no input
/// can overflow ours, and the depth is checked as each level opens.
enum YAMLEvents {
    private enum Frame {
        case sequence([YAMLNode])
        case mapping([(key: String, value: YAMLNode)], key: String?)
    }

    private struct Open {
        var frame: Frame
        var anchor: String?
        var line: Int
        /// Nodes inside, for the alias bound.
        var size = 1
    }

    static func parse(_ bytes: [UInt8], stop: StopToken) throws(YAMLError) -> YAMLNode {
        let library: YAMLLibrary
        switch YAMLLibrary.shared {
        case .success(let loaded): library = loaded
        case .failure(let error): throw error
        }
        let api = library.api
        var result: Result<YAMLNode, YAMLError> = .success(.null)
        bytes.withUnsafeBufferPointer { input in
            guard let parser = multipack_yaml_open(api, input.baseAddress, input.count) else {
                result = .failure(YAMLError(line: 0, message: "libyaml could not start a parser"))
                return
            }
            defer { multipack_yaml_close(api, parser) }
            var builder = Builder()
            var event = yaml_event_t()
            while true {
                // A huge release must not hold multipack past a stop signal (SPEC §11).
                if stop.isRequested {
                    result = .failure(YAMLError(line: 0, message: "multipack was asked to stop"))
                    return
                }
                guard multipack_yaml_next(api, parser, &event) == 1 else {
                    result = .failure(problem(parser.pointee))
                    return
                }
                defer { multipack_yaml_event_free(api, &event) }
                do throws(YAMLError) {
                    if try builder.take(event) { break }
                } catch {
                    result = .failure(error)
                    return
                }
            }
            result = .success(builder.root ?? .null)
        }
        return try result.get()
    }

    private static func problem(_ parser: yaml_parser_t) -> YAMLError {
        let what = parser.problem.map { String(cString: $0) } ?? "malformed YAML"
        let context = parser.context.map { String(cString: $0) + " " } ?? ""
        return YAMLError(line: Int(parser.problem_mark.line) + 1, message: context + what)
    }

    private struct Builder {
        var stack: [Open] = []
        var root: YAMLNode?
        var anchors: [String: (node: YAMLNode, size: Int)] = [:]
        var expanded = 0
        var documents = 0

        /// Takes one event; true at the end of the stream.
        mutating func take(_ event: yaml_event_t) throws(YAMLError) -> Bool {
            let line = Int(event.start_mark.line) + 1
            let anchor = withUnsafePointer(to: event) { multipack_yaml_anchor($0) }.map { String(cString: $0) }
            switch event.type {
            case YAML_STREAM_END_EVENT:
                return true
            case YAML_DOCUMENT_START_EVENT:
                documents += 1
                if documents > 1 {
                    throw YAMLError(line: line, message: "more than one YAML document")
                }
            case YAML_SCALAR_EVENT:
                let scalar = event.data.scalar
                let text = String(
                    decoding: UnsafeBufferPointer(start: scalar.value, count: Int(scalar.length)), as: UTF8.self)
                let isNull =
                    scalar.style == YAML_PLAIN_SCALAR_STYLE && scalar.length <= 4
                    && (text.isEmpty || text == "~" || text == "null" || text == "Null" || text == "NULL")
                let node: YAMLNode = isNull ? .null : .scalar(text)
                if let anchor { anchors[anchor] = (node, 1) }
                try deliver(node, key: text, size: 1, line: line)
            case YAML_ALIAS_EVENT:
                guard let anchor, let target = anchors[anchor] else {
                    throw YAMLError(line: line, message: "an alias names an unknown anchor")
                }
                expanded += target.size
                guard expanded <= YAML.maxAliasNodes else {
                    throw YAMLError(
                        line: line, message: "aliases expand to more than \(YAML.maxAliasNodes) nodes")
                }
                let key: String
                if case .scalar(let text) = target.node { key = text } else { key = "" }
                try deliver(target.node, key: target.size == 1 ? key : nil, size: target.size, line: line)
            case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                guard stack.count < YAML.maxDepth else {
                    throw YAMLError(line: line, message: "it is nested more than \(YAML.maxDepth) levels deep")
                }
                let frame: Frame =
                    event.type == YAML_SEQUENCE_START_EVENT ? .sequence([]) : .mapping([], key: nil)
                stack.append(Open(frame: frame, anchor: anchor, line: line))
            case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                let open = stack.removeLast()
                let node: YAMLNode
                switch open.frame {
                case .sequence(let items): node = .sequence(items)
                case .mapping(let pairs, _): node = .mapping(pairs)
                }
                if let anchor = open.anchor { anchors[anchor] = (node, open.size) }
                try deliver(node, key: nil, size: open.size, line: open.line)
            default:
                break
            }
            return false
        }

        /// Hands a finished node to the collection being built (or makes it the root). `key` is
        /// its text when it is a scalar, usable as a mapping key.
        private mutating func deliver(_ node: YAMLNode, key: String?, size: Int, line: Int) throws(YAMLError) {
            guard let last = stack.indices.last else {
                root = node
                return
            }
            stack[last].size += size
            switch stack[last].frame {
            case .sequence(var items):
                stack[last].frame = .sequence([])
                items.append(node)
                stack[last].frame = .sequence(items)
            case .mapping(var pairs, let pending):
                stack[last].frame = .sequence([])
                if let pending {
                    pairs.append((pending, node))
                    stack[last].frame = .mapping(pairs, key: nil)
                } else {
                    guard let key else {
                        throw YAMLError(line: line, message: "a mapping key is not a plain string")
                    }
                    stack[last].frame = .mapping(pairs, key: key)
                }
            }
        }
    }
}
