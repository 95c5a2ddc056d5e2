import CMPI

extension Communicator {
    /// Sends `buffer` to rank `destination`; returns once the buffer may be reused.
    ///
    /// The corresponding C function is `MPI_Send`.
    public func send<T: MPIScalar>(_ buffer: UnsafeBufferPointer<T>, to destination: Int, tag: Int = 0) throws(MPIError) {
        let count = try mpiCount(buffer.count, "MPI_Send")
        try checkMPI("MPI_Send", MPI_Send(buffer.baseAddress, count, T.mpiDatatype, Int32(destination), Int32(tag), handle))
    }

    /// Receives exactly `buffer.count` elements from rank `source` (nil: any rank).
    ///
    /// The corresponding C function is `MPI_Recv`.
    @discardableResult
    public func receive<T: MPIScalar>(into buffer: UnsafeMutableBufferPointer<T>, from source: Int?, tag: Int? = 0) throws(MPIError) -> MessageStatus {
        let count = try mpiCount(buffer.count, "MPI_Recv")
        var status = MPI_Status()
        try checkMPI("MPI_Recv", MPI_Recv(buffer.baseAddress, count, T.mpiDatatype,
                                          source.map { Int32($0) } ?? meshlm_mpi_any_source(),
                                          tag.map { Int32($0) } ?? meshlm_mpi_any_tag(), handle, &status))
        return MessageStatus(source: Int(status.MPI_SOURCE), tag: Int(status.MPI_TAG))
    }

    /// Array forms of `send` and `receive`.
    public func send<T: MPIScalar>(_ array: [T], to destination: Int, tag: Int = 0) throws(MPIError) {
        try array.withUnsafeBufferPointer { (buffer) throws(MPIError) in try send(buffer, to: destination, tag: tag) }
    }

    @discardableResult
    public func receive<T: MPIScalar>(into array: inout [T], from source: Int?, tag: Int? = 0) throws(MPIError) -> MessageStatus {
        try array.withUnsafeMutableBufferPointer { (buffer) throws(MPIError) in
            try receive(into: buffer, from: source, tag: tag)
        }
    }

    /// Starts sending `buffer` to `destination`; the buffer must stay untouched until the request
    /// completes.
    ///
    /// The corresponding C function is `MPI_Isend`.
    public func sendNonBlocking<T: MPIScalar>(_ buffer: UnsafeBufferPointer<T>, to destination: Int, tag: Int = 0,
                                              retaining owner: AnyObject? = nil) throws(MPIError) -> Request {
        let count = try mpiCount(buffer.count, "MPI_Isend")
        var request: MPI_Request? = meshlm_mpi_request_null()
        try checkMPI("MPI_Isend", MPI_Isend(buffer.baseAddress, count, T.mpiDatatype, Int32(destination),
                                            Int32(tag), handle, &request))
        return Request(request, call: "MPI_Isend", retaining: owner.map { [$0] } ?? [])
    }

    /// Starts receiving `buffer.count` elements from `source` (nil: any rank).
    ///
    /// The corresponding C function is `MPI_Irecv`.
    public func receiveNonBlocking<T: MPIScalar>(into buffer: UnsafeMutableBufferPointer<T>, from source: Int?, tag: Int? = 0,
                                                 retaining owner: AnyObject? = nil) throws(MPIError) -> Request {
        let count = try mpiCount(buffer.count, "MPI_Irecv")
        var request: MPI_Request? = meshlm_mpi_request_null()
        try checkMPI("MPI_Irecv", MPI_Irecv(buffer.baseAddress, count, T.mpiDatatype,
                                            source.map { Int32($0) } ?? meshlm_mpi_any_source(),
                                            tag.map { Int32($0) } ?? meshlm_mpi_any_tag(), handle, &request))
        return Request(request, call: "MPI_Irecv", retaining: owner.map { [$0] } ?? [])
    }

    /// Starts an in-place allreduce of `buffer` (the overlap of gradient buckets with backward).
    ///
    /// The corresponding C function is `MPI_Iallreduce` (with `MPI_IN_PLACE`).
    public func allreduceNonBlocking<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>, _ operation: ReduceOperation,
                                                   retaining owner: AnyObject? = nil) throws(MPIError) -> Request {
        let count = try mpiCount(buffer.count, "MPI_Iallreduce")
        var request: MPI_Request? = meshlm_mpi_request_null()
        try checkMPI("MPI_Iallreduce", MPI_Iallreduce(meshlm_mpi_in_place(), buffer.baseAddress, count, T.mpiDatatype,
                                                      operation.mpiOp, handle, &request))
        return Request(request, call: "MPI_Iallreduce", retaining: owner.map { [$0] } ?? [])
    }

    /// Starts a reduce-scatter with equal blocks (ZeRO-2 gradient buckets).
    ///
    /// The corresponding C function is `MPI_Ireduce_scatter_block`.
    public func reduceScatterNonBlocking<T: MPIScalar>(_ send: UnsafeBufferPointer<T>, into receive: UnsafeMutableBufferPointer<T>,
                                                       _ operation: ReduceOperation,
                                                       retaining owner: AnyObject? = nil) throws(MPIError) -> Request {
        precondition(send.count == receive.count * size, "reduce-scatter send must hold size × receive elements")
        let count = try mpiCount(receive.count, "MPI_Ireduce_scatter_block")
        var request: MPI_Request? = meshlm_mpi_request_null()
        try checkMPI("MPI_Ireduce_scatter_block",
                     MPI_Ireduce_scatter_block(send.baseAddress, receive.baseAddress, count, T.mpiDatatype,
                                               operation.mpiOp, handle, &request))
        return Request(request, call: "MPI_Ireduce_scatter_block", retaining: owner.map { [$0] } ?? [])
    }

    /// Starts an all-gather with equal blocks (ZeRO-3 parameter prefetch).
    ///
    /// The corresponding C function is `MPI_Iallgather`.
    public func allgatherNonBlocking<T: MPIScalar>(_ send: UnsafeBufferPointer<T>, into receive: UnsafeMutableBufferPointer<T>,
                                                   retaining owner: AnyObject? = nil) throws(MPIError) -> Request {
        precondition(receive.count == send.count * size, "all-gather receive must hold size × send elements")
        let count = try mpiCount(send.count, "MPI_Iallgather")
        var request: MPI_Request? = meshlm_mpi_request_null()
        try checkMPI("MPI_Iallgather", MPI_Iallgather(send.baseAddress, count, T.mpiDatatype, receive.baseAddress,
                                                      count, T.mpiDatatype, handle, &request))
        return Request(request, call: "MPI_Iallgather", retaining: owner.map { [$0] } ?? [])
    }

    /// Starts a broadcast from `root`.
    ///
    /// The corresponding C function is `MPI_Ibcast`.
    public func broadcastNonBlocking<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>, root: Int,
                                                   retaining owner: AnyObject? = nil) throws(MPIError) -> Request {
        let count = try mpiCount(buffer.count, "MPI_Ibcast")
        var request: MPI_Request? = meshlm_mpi_request_null()
        try checkMPI("MPI_Ibcast", MPI_Ibcast(buffer.baseAddress, count, T.mpiDatatype, Int32(root), handle, &request))
        return Request(request, call: "MPI_Ibcast", retaining: owner.map { [$0] } ?? [])
    }
}
