/// Runs a command body on every rank with MeshLM's failure policy (DESIGN §6):
/// - a failure all ranks agreed on (`Communicator.collectively`, used for setup and validation)
///   is printed once, by rank 0, and every rank exits 1 after `MPI_Finalize`;
/// - a failure of one rank alone is printed by that rank, with its number, and `MPI_Abort` ends
///   the others, so the job never hangs waiting for it.
public enum SPMDJob {
    /// Starts MPI, runs `setup` collectively (so a bad input ends the job with one message), then
    /// `body`, then finalizes MPI. Returns the process exit status: 0 on success, 1 on failure.
    public static func run<Context>(verbose: Bool,
                                    setup: (Communicator, Log) throws -> Context,
                                    body: (Context) throws -> Void) -> Int32 {
        let world: Communicator
        do {
            world = try MPIEnvironment.initialize()
        } catch {
            Log.write("meshlm: error: cannot start MPI: \(error)\n", to: .standardError)
            return 1
        }
        let log = Log(rank: world.rank, verbose: verbose)
        do {
            let context = try world.collectively { try setup(world, log) }
            try body(context)
        } catch let failure as CollectiveFailure {
            if world.rank == 0 {
                let origin = world.size > 1 && failure.rank != 0 ? " (rank \(failure.rank))" : ""
                Log.write("meshlm: error\(origin): \(failure.message)\n", to: .standardError)
            }
            MPIEnvironment.finalize()
            return 1
        } catch {
            let origin = world.size > 1 ? " (rank \(world.rank))" : ""
            Log.write("meshlm: error\(origin): \(describe(error))\n", to: .standardError)
            if world.size > 1 { MPIEnvironment.abort(code: 1) }
            MPIEnvironment.finalize()
            return 1
        }
        MPIEnvironment.finalize()
        return 0
    }
}

/// A user-facing failure: its text is the whole message.
public struct JobError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
