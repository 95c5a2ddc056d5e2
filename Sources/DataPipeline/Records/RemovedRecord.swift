/// Why a stage dropped a document.
public enum RemovalReason: Sendable, Equatable {
    /// An operator (by its recipe name) rejected it.
    case filter(String)
    /// It duplicates the kept document with this id.
    case duplicate(of: String)
}

/// One row of `removed.jsonl` (DESIGN §5): `{"id":…,"filter":…}` or `{"id":…,"duplicate_of":…}`.
public struct RemovedRecord: Sendable, Equatable {
    public let id: String
    public let reason: RemovalReason

    public init(id: String, reason: RemovalReason) {
        self.id = id
        self.reason = reason
    }

    /// The row as one JSON line (without the newline).
    public var jsonLine: [UInt8] {
        var output = Array("{\"id\":".utf8)
        JSONString.appendQuoted(id, to: &output)
        switch reason {
        case .filter(let name):
            output += Array(",\"filter\":".utf8)
            JSONString.appendQuoted(name, to: &output)
        case .duplicate(let original):
            output += Array(",\"duplicate_of\":".utf8)
            JSONString.appendQuoted(original, to: &output)
        }
        output.append(UInt8(ascii: "}"))
        return output
    }
}
