import CMPI

/// A failed MPI call, named, with Open MPI's own description of the failure.
public struct MPIError: Error, CustomStringConvertible, Sendable {
    /// The MPI function that failed, e.g. `MPI_Allreduce`.
    public let call: String
    /// The error code MPI returned.
    public let code: Int32
    /// MPI's text for `code` (from `MPI_Error_string`).
    public let reason: String

    public var description: String { "\(call) failed: \(reason) (MPI error code \(code))" }
}

/// Runs one MPI call and turns a non-success return into an `MPIError` naming the call.
///
/// Every MPI call in MeshLM goes through here; the error handler of every communicator is set to
/// `MPI_ERRORS_RETURN` (see `MPIEnvironment.initialize`), so a failure comes back as a code
/// instead of aborting the process inside the library.
@inline(__always)
func checkMPI(_ call: StaticString, _ code: Int32) throws(MPIError) {
    if code != meshlm_mpi_success() {
        throw MPIError(call: "\(call)", code: code, reason: mpiErrorString(code))
    }
}

func mpiErrorString(_ code: Int32) -> String {
    var buffer = [CChar](repeating: 0, count: Int(meshlm_mpi_max_error_string()) + 1)
    var length: Int32 = 0
    guard MPI_Error_string(code, &buffer, &length) == meshlm_mpi_success() else {
        return "unknown MPI error"
    }
    return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// A count that MPI cannot express in its 32-bit `int` arguments.
func mpiCount(_ count: Int, _ call: StaticString) throws(MPIError) -> Int32 {
    guard count >= 0, count <= Int(Int32.max) else {
        throw MPIError(call: "\(call)", code: -1,
                       reason: "element count \(count) does not fit MPI's 32-bit count; split the message")
    }
    return Int32(count)
}
