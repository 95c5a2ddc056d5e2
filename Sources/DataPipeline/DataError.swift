/// A data input or output that cannot be used. The message names the file (and line, or key)
/// and says what is wrong; it is the whole text a user sees after `meshlm: error:`.
public struct DataError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}
