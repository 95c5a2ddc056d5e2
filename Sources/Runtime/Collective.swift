import Foundation

/// A failure that every rank of a communicator agreed on: the first failing rank's message,
/// known to all ranks, so it is printed once and every rank exits the same way.
public struct CollectiveFailure: Error, CustomStringConvertible, Sendable {
    /// The lowest rank that failed.
    public let rank: Int
    /// That rank's error, described.
    public let message: String
    public var description: String { message }

    init(rank: Int, message: String) {
        self.rank = rank
        self.message = message
    }

    /// A failure every rank detects from the same, already reduced values (a NaN loss after its
    /// all-reduce): thrown by every rank, printed once.
    public static func agreed(_ message: String) -> CollectiveFailure {
        CollectiveFailure(rank: 0, message: message)
    }
}

extension Communicator {
    /// Runs `body` on every rank, then agrees on the outcome: if any rank threw, every rank throws
    /// a `CollectiveFailure` carrying the lowest failing rank's message; otherwise every rank gets
    /// its own result.
    ///
    /// Setup work (reading configs, validating the mesh, opening files) runs inside this, so a
    /// bad input seen by one rank or by all ends the job with one message, not one per rank, and
    /// never leaves the other ranks waiting in a collective.
    ///
    /// The corresponding C functions are `MPI_Allreduce` (minimum failing rank) and `MPI_Bcast`.
    public func collectively<Result>(_ body: () throws -> Result) throws -> Result {
        let outcome: Swift.Result<Result, any Error>
        do { outcome = .success(try body()) } catch { outcome = .failure(error) }
        var firstFailure: Int32 = Int32(size)
        if case .failure = outcome { firstFailure = Int32(rank) }
        firstFailure = try allreduce(firstFailure, .min)
        switch outcome {
        case .success(let value) where firstFailure == Int32(size):
            return value
        default:
            var message = ""
            if case .failure(let error) = outcome, rank == Int(firstFailure) { message = describe(error) }
            message = try broadcast(message, root: Int(firstFailure))
            throw CollectiveFailure(rank: Int(firstFailure), message: message)
        }
    }

    /// `body` run collectively on `world`, or plainly when there is no world (a stage that also
    /// runs without MPI).
    public static func collectively<Result>(on world: Communicator?, _ body: () throws -> Result) throws -> Result {
        guard let world else { return try body() }
        return try world.collectively(body)
    }
}

/// The text a user sees for an error: its description, except for Foundation's own errors, whose
/// text ("NSCocoaErrorDomain error 512", "EncodingError.invalidValue") tells a user nothing.
/// Those are worded here as a last resort; the code that calls Foundation should catch them and
/// say which option or file was at fault and what to do (DESIGN §6).
public func describe(_ error: any Error) -> String {
    switch error {
    case let error as EncodingError:
        guard case .invalidValue(let value, let context) = error else { return "a value cannot be written as JSON" }
        let key = dottedKey(context.codingPath)
        let nonFinite = (value as? Double).map { !$0.isFinite } ?? (value as? Float).map { !$0.isFinite } ?? false
        return "\(key.isEmpty ? "a value" : "'\(key)'") = \(value) cannot be written as JSON"
            + (nonFinite ? " (JSON has no infinity or NaN): give a finite number" : "")
    case let error as DecodingError:
        func at(_ path: [any CodingKey]) -> String { path.isEmpty ? "" : "key '\(dottedKey(path))': " }
        switch error {
        case .keyNotFound(let key, let context):
            return "required key '\(dottedKey(context.codingPath + [key]))' is missing"
        case .valueNotFound(_, let context):
            return "\(at(context.codingPath))no value"
        case .typeMismatch(_, let context):
            let detail = context.debugDescription.replacingOccurrences(of: "Expected to decode", with: "expected")
            return at(context.codingPath) + (detail.hasSuffix(".") ? String(detail.dropLast()) : detail)
        case .dataCorrupted(let context):
            let underlying = (context.underlyingError as? NSError)?.userInfo[NSDebugDescriptionErrorKey] as? String
            return "\(at(context.codingPath))not valid JSON" + (underlying.map { " (\($0))" } ?? "")
        @unknown default:
            return "not valid JSON"
        }
    case is CocoaError, is POSIXError:
        let path = FileProblem.path(of: error)
        return "\(path ?? "a file operation"): \(FileProblem.reason(error, path: path ?? ""))"
    default:
        return String(describing: error)
    }
}
