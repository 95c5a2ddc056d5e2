/// A JSON-like value handed to a chat template: a message field, a tool schema, an extra keyword.
///
/// Objects keep their keys in insertion order because templates print tool schemas with
/// `tojson`, and transformers (Python dicts) prints keys in the order they were written.
public enum ChatValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case integer(Int)
    case double(Double)
    case string(String)
    case array([ChatValue])
    case object(ChatObject)

    /// Parses JSON text, keeping the key order of every object as written.
    public init(jsonText: String) throws {
        self = try OrderedJSONParser.parse(jsonText)
    }

    /// The string, when this value is one.
    public var stringValue: String? {
        if case .string(let text) = self { return text }
        return nil
    }
}

extension ChatValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .integer(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: ChatValue...) { self = .array(elements) }
    public init(nilLiteral: ()) { self = .null }
    public init(dictionaryLiteral elements: (String, ChatValue)...) {
        var object = ChatObject()
        for (key, value) in elements { object[key] = value }
        self = .object(object)
    }
}

/// A string-keyed map that remembers insertion order (a Python `dict`).
public struct ChatObject: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    public private(set) var keys: [String] = []
    private var storage: [String: ChatValue] = [:]

    public init() {}

    public init(dictionaryLiteral elements: (String, ChatValue)...) {
        for (key, value) in elements { self[key] = value }
    }

    /// Setting an existing key keeps its position, as Python does; setting nil removes it.
    public subscript(key: String) -> ChatValue? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    public var count: Int { keys.count }

    /// Key and value pairs in insertion order.
    public var entries: [(key: String, value: ChatValue)] {
        keys.map { ($0, storage[$0] ?? .null) }
    }

    public static func == (left: ChatObject, right: ChatObject) -> Bool {
        // Python compares dicts without regard to order.
        left.storage == right.storage
    }
}
