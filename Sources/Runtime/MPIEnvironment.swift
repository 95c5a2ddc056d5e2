import CMPI

/// Process-wide MPI start and end.
///
/// MeshLM runs the same binary plain (one rank, MPI's singleton mode) or under `mpirun`/`srun`.
/// `initialize` is called once at the top of every command; `finalize` once at its end.
public enum MPIEnvironment {
    // Written only by `initialize` and `finalize`, which the main thread calls once each.
    nonisolated(unsafe) private static var world: Communicator?
    nonisolated(unsafe) private(set) static var isFinalized = false

    /// Starts MPI with `MPI_THREAD_MULTIPLE` (a communication thread may progress requests while
    /// compute threads run) and returns the world communicator, whose error handler is set to
    /// return codes instead of aborting. Calling it again returns the same communicator.
    ///
    /// The corresponding C functions are `MPI_Init_thread` and `MPI_Comm_set_errhandler`.
    public static func initialize() throws(MPIError) -> Communicator {
        if let world { return world }
        var provided: Int32 = 0
        var initialized: Int32 = 0
        try checkMPI("MPI_Initialized", MPI_Initialized(&initialized))
        if initialized == 0 {
            try checkMPI("MPI_Init_thread",
                         MPI_Init_thread(nil, nil, meshlm_mpi_thread_multiple(), &provided))
        }
        let communicator = try Communicator(borrowing: meshlm_mpi_comm_world())
        world = communicator
        return communicator
    }

    /// This process's rank in the world (0 before MPI starts), for messages from code that holds
    /// no communicator.
    public static var worldRank: Int { world?.rank ?? 0 }

    /// Ends MPI; communicators created by `split` must not be used afterwards.
    ///
    /// The corresponding C function is `MPI_Finalize`.
    public static func finalize() {
        guard world != nil, !isFinalized else { return }
        isFinalized = true
        world = nil
        _ = MPI_Finalize()
    }

    /// The MPI library's own version line (e.g. "Open MPI v4.1.4, …").
    ///
    /// The corresponding C function is `MPI_Get_library_version`.
    public static var libraryVersion: String {
        var buffer = [CChar](repeating: 0, count: 8192)
        var length: Int32 = 0
        guard MPI_Get_library_version(&buffer, &length) == meshlm_mpi_success() else { return "unknown MPI" }
        let text = String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return text.split(separator: "\n").first.map { String($0).trimmingCharacters(in: .whitespaces) } ?? text
    }

    /// Ends every rank of the job at once with `code`; used when one rank fails on its own so
    /// the others do not wait forever in a collective.
    ///
    /// The corresponding C function is `MPI_Abort`.
    public static func abort(code: Int32) -> Never {
        _ = MPI_Abort(meshlm_mpi_comm_world(), code)
        exit(code)
    }
}

import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
