import CMPI
import Foundation

/// What a completed receive reports.
public struct MessageStatus: Sendable, Equatable {
    /// The rank the message came from.
    public let source: Int
    /// The message's tag.
    public let tag: Int

    public init(source: Int, tag: Int) {
        self.source = source
        self.tag = tag
    }
}

/// An MPI operation in flight: a non-blocking send, receive or collective.
///
/// The buffers given to the operation must stay alive and untouched until `wait` returns or
/// `test` returns true. Open MPI makes progress on a request only inside MPI calls, so code that
/// overlaps communication with compute calls `test` between pieces of work
/// (../docs/architecture.md, "Overlap"). A request dropped while pending is waited for in
/// `deinit`, so its buffers are never written after they are freed.
public final class Request: @unchecked Sendable {
    /// Serializes `test` and `wait`, which a progress thread and the owner may call at once.
    private let lock = NSLock()
    private var handle: MPI_Request?
    private let call: StaticString
    /// Objects the operation reads or writes, kept alive until it completes.
    private var retained: [AnyObject]

    init(_ handle: MPI_Request?, call: StaticString, retaining retained: [AnyObject] = []) {
        self.handle = handle
        self.call = call
        self.retained = retained
    }

    /// Whether the operation has completed (`wait` or a true `test` seen).
    public var isComplete: Bool {
        lock.lock()
        defer { lock.unlock() }
        return handle == meshlm_mpi_request_null()
    }

    /// Blocks until the operation completes.
    ///
    /// The corresponding C function is `MPI_Wait`.
    @discardableResult
    public func wait() throws(MPIError) -> MessageStatus {
        lock.lock()
        defer { lock.unlock() }
        var status = MPI_Status()
        try checkMPI("MPI_Wait", MPI_Wait(&handle, &status))
        retained = []
        return MessageStatus(source: Int(status.MPI_SOURCE), tag: Int(status.MPI_TAG))
    }

    /// Progresses the operation and reports whether it has completed.
    ///
    /// The corresponding C function is `MPI_Test`.
    public func test() throws(MPIError) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard handle != meshlm_mpi_request_null() else { return true }
        var flag: Int32 = 0
        try checkMPI("MPI_Test", MPI_Test(&handle, &flag, meshlm_mpi_status_ignore()))
        if flag != 0 { retained = [] }
        return flag != 0
    }

    /// Waits for every request.
    ///
    /// The corresponding C function is `MPI_Waitall`.
    public static func waitAll(_ requests: [Request]) throws(MPIError) {
        var handles = requests.map(\.handle)
        try checkMPI("MPI_Waitall", MPI_Waitall(Int32(handles.count), &handles, meshlm_mpi_statuses_ignore()))
        for (request, handle) in zip(requests, handles) {
            request.handle = handle
            request.retained = []
        }
    }

    deinit {
        if handle != meshlm_mpi_request_null() && !MPIEnvironment.isFinalized {
            _ = MPI_Wait(&handle, meshlm_mpi_status_ignore())
        }
    }
}
