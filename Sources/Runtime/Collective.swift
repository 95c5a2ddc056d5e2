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

/// The text a user sees for an error: its description when it has one.
public func describe(_ error: any Error) -> String {
    String(describing: error)
}
