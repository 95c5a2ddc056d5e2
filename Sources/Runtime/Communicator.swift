import CMPI

/// A group of ranks that communicate: a Swift owner of an MPI communicator.
///
/// Buffer-pointer methods do no copying and are what hot paths use; array methods are
/// conveniences. Every method is collective over the communicator unless it says otherwise
/// (point-to-point), so all ranks of the communicator must call it in the same order.
public final class Communicator: @unchecked Sendable {
    /// The MPI handle, for calls this type does not wrap.
    public let handle: MPI_Comm
    /// This process's rank in the communicator, `0..<size`.
    public let rank: Int
    /// The number of ranks in the communicator.
    public let size: Int
    private let ownsHandle: Bool

    /// Wraps a communicator MeshLM did not create (the world); it is never freed.
    convenience init(borrowing handle: MPI_Comm) throws(MPIError) {
        try self.init(handle, owning: false)
    }

    private convenience init(owning handle: MPI_Comm) throws(MPIError) {
        try self.init(handle, owning: true)
    }

    /// Sets the error handler to return codes (new communicators inherit it, but setting it
    /// states the contract) and reads rank and size.
    private init(_ handle: MPI_Comm, owning: Bool) throws(MPIError) {
        try checkMPI("MPI_Comm_set_errhandler", MPI_Comm_set_errhandler(handle, meshlm_mpi_errors_return()))
        var rank: Int32 = 0
        var size: Int32 = 0
        try checkMPI("MPI_Comm_rank", MPI_Comm_rank(handle, &rank))
        try checkMPI("MPI_Comm_size", MPI_Comm_size(handle, &size))
        self.handle = handle
        self.rank = Int(rank)
        self.size = Int(size)
        self.ownsHandle = owning
    }

    deinit {
        if ownsHandle && !MPIEnvironment.isFinalized {
            var handle: MPI_Comm? = self.handle
            _ = MPI_Comm_free(&handle)
        }
    }

    /// Partitions the communicator: ranks passing the same `color` form one new communicator,
    /// ordered by `key` (ties by rank here). A rank passing `color: nil` gets no communicator.
    ///
    /// The corresponding C function is `MPI_Comm_split`.
    public func split(color: Int?, key: Int) throws(MPIError) -> Communicator? {
        var newHandle: MPI_Comm? = meshlm_mpi_comm_null()
        let mpiColor = color.map { Int32($0) } ?? meshlm_mpi_undefined()
        try checkMPI("MPI_Comm_split", MPI_Comm_split(handle, mpiColor, Int32(key), &newHandle))
        guard let newHandle, newHandle != meshlm_mpi_comm_null() else { return nil }
        return try Communicator(owning: newHandle)
    }

    /// The ranks of this communicator that share this node's memory (one communicator per node),
    /// for sizing per-rank thread counts and node-local work.
    ///
    /// The corresponding C function is `MPI_Comm_split_type` with `MPI_COMM_TYPE_SHARED`.
    public func splitByNode() throws(MPIError) -> Communicator {
        var newHandle: MPI_Comm? = meshlm_mpi_comm_null()
        try checkMPI("MPI_Comm_split_type", MPI_Comm_split_type(handle, meshlm_mpi_comm_type_shared(), Int32(rank),
                                                                 meshlm_mpi_info_null(), &newHandle))
        guard let newHandle, newHandle != meshlm_mpi_comm_null() else {
            throw MPIError(call: "MPI_Comm_split_type", code: -1, reason: "no node-local communicator returned")
        }
        return try Communicator(owning: newHandle)
    }

    /// Blocks until every rank has called it.
    ///
    /// The corresponding C function is `MPI_Barrier`.
    public func barrier() throws(MPIError) {
        try checkMPI("MPI_Barrier", MPI_Barrier(handle))
    }

    /// Copies `buffer` on `root` into `buffer` on every other rank.
    ///
    /// The corresponding C function is `MPI_Bcast`.
    public func broadcast<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>, root: Int) throws(MPIError) {
        let count = try mpiCount(buffer.count, "MPI_Bcast")
        try checkMPI("MPI_Bcast", MPI_Bcast(buffer.baseAddress, count, T.mpiDatatype, Int32(root), handle))
    }

    /// Array form of `broadcast(_:root:)`; every rank's array must already have root's length.
    public func broadcast<T: MPIScalar>(_ array: inout [T], root: Int) throws(MPIError) {
        try array.withUnsafeMutableBufferPointer { (buffer) throws(MPIError) in
            try broadcast(buffer, root: root)
        }
    }

    /// Broadcasts a string of any length from `root` (its length first, then its UTF-8 bytes).
    public func broadcast(_ string: String, root: Int) throws(MPIError) -> String {
        var bytes = Array(string.utf8)
        var length = [Int64(bytes.count)]
        try broadcast(&length, root: root)
        if rank != root { bytes = [UInt8](repeating: 0, count: Int(length[0])) }
        try broadcast(&bytes, root: root)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Combines `buffer` element-wise across ranks with `operation`, leaving the result in
    /// `buffer` on every rank.
    ///
    /// The corresponding C function is `MPI_Allreduce` (with `MPI_IN_PLACE`).
    public func allreduce<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>,
                                        _ operation: ReduceOperation) throws(MPIError) {
        let count = try mpiCount(buffer.count, "MPI_Allreduce")
        try checkMPI("MPI_Allreduce", MPI_Allreduce(meshlm_mpi_in_place(), buffer.baseAddress, count,
                                                    T.mpiDatatype, operation.mpiOp, handle))
    }

    /// Array form of `allreduce(_:_:)`.
    public func allreduce<T: MPIScalar>(_ array: inout [T], _ operation: ReduceOperation) throws(MPIError) {
        try array.withUnsafeMutableBufferPointer { (buffer) throws(MPIError) in
            try allreduce(buffer, operation)
        }
    }

    /// One value reduced across ranks.
    public func allreduce<T: MPIScalar>(_ value: T, _ operation: ReduceOperation) throws(MPIError) -> T {
        var array = [value]
        try allreduce(&array, operation)
        return array[0]
    }

    /// Combines `send` element-wise across ranks into `receive` on every rank.
    ///
    /// The corresponding C function is `MPI_Allreduce`.
    public func allreduce<T: MPIScalar>(_ send: UnsafeBufferPointer<T>, into receive: UnsafeMutableBufferPointer<T>,
                                        _ operation: ReduceOperation) throws(MPIError) {
        precondition(send.count == receive.count, "allreduce buffers differ in length")
        let count = try mpiCount(send.count, "MPI_Allreduce")
        try checkMPI("MPI_Allreduce", MPI_Allreduce(send.baseAddress, receive.baseAddress, count,
                                                    T.mpiDatatype, operation.mpiOp, handle))
    }
}
