import CMPI

/// Displacements (exclusive prefix sums) for the v-variants of collectives.
func displacements(_ counts: [Int32]) -> [Int32] {
    var result = [Int32](repeating: 0, count: counts.count)
    var offset: Int32 = 0
    for index in counts.indices {
        result[index] = offset
        offset += counts[index]
    }
    return result
}

extension Communicator {
    /// Reduces `send` (size × `receive.count` elements) across ranks and leaves block `rank` of
    /// the result in `receive`: the first half of an allreduce, as ZeRO uses it.
    ///
    /// The corresponding C function is `MPI_Reduce_scatter_block`.
    public func reduceScatter<T: MPIScalar>(_ send: UnsafeBufferPointer<T>, into receive: UnsafeMutableBufferPointer<T>,
                                            _ operation: ReduceOperation) throws(MPIError) {
        precondition(send.count == receive.count * size, "reduce-scatter send must hold size × receive elements")
        let count = try mpiCount(receive.count, "MPI_Reduce_scatter_block")
        try checkMPI("MPI_Reduce_scatter_block",
                     MPI_Reduce_scatter_block(send.baseAddress, receive.baseAddress, count,
                                              T.mpiDatatype, operation.mpiOp, handle))
    }

    /// Reduces `send` across ranks and leaves on rank r the `counts[r]` elements that start at
    /// `counts[0..<r].sum()`: reduce-scatter with uneven blocks (e.g. a vocabulary that does not
    /// divide the degree).
    ///
    /// The corresponding C function is `MPI_Reduce_scatter`.
    public func reduceScatter<T: MPIScalar>(_ send: UnsafeBufferPointer<T>, into receive: UnsafeMutableBufferPointer<T>,
                                            counts: [Int], _ operation: ReduceOperation) throws(MPIError) {
        precondition(counts.count == size && counts.reduce(0, +) == send.count && counts[rank] == receive.count,
                     "reduce-scatter counts do not match the buffers")
        var mpiCounts = [Int32]()
        for count in counts { mpiCounts.append(try mpiCount(count, "MPI_Reduce_scatter")) }
        try checkMPI("MPI_Reduce_scatter",
                     MPI_Reduce_scatter(send.baseAddress, receive.baseAddress, mpiCounts,
                                        T.mpiDatatype, operation.mpiOp, handle))
    }

    /// Concatenates every rank's `send` (equal lengths) in rank order into `receive` on every rank.
    ///
    /// The corresponding C function is `MPI_Allgather`.
    public func allgather<T: MPIScalar>(_ send: UnsafeBufferPointer<T>, into receive: UnsafeMutableBufferPointer<T>) throws(MPIError) {
        precondition(receive.count == send.count * size, "all-gather receive must hold size × send elements")
        let count = try mpiCount(send.count, "MPI_Allgather")
        try checkMPI("MPI_Allgather", MPI_Allgather(send.baseAddress, count, T.mpiDatatype,
                                                    receive.baseAddress, count, T.mpiDatatype, handle))
    }

    /// All-gather in place: rank r's block already sits at `buffer[r·n ..< (r+1)·n]` (n =
    /// buffer.count / size); afterwards every block is everywhere (ZeRO's parameter gather).
    ///
    /// The corresponding C function is `MPI_Allgather` with `MPI_IN_PLACE`.
    public func allgatherInPlace<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>) throws(MPIError) {
        precondition(buffer.count % size == 0, "in-place all-gather needs size equal blocks")
        let count = try mpiCount(buffer.count / size, "MPI_Allgather")
        try checkMPI("MPI_Allgather", MPI_Allgather(meshlm_mpi_in_place(), 0, T.mpiDatatype,
                                                    buffer.baseAddress, count, T.mpiDatatype, handle))
    }

    /// Concatenates every rank's `send` (rank r sends `counts[r]` elements) in rank order into
    /// `receive` on every rank.
    ///
    /// The corresponding C function is `MPI_Allgatherv`.
    public func allgather<T: MPIScalar>(_ send: UnsafeBufferPointer<T>, into receive: UnsafeMutableBufferPointer<T>,
                                        counts: [Int]) throws(MPIError) {
        precondition(counts.count == size && counts[rank] == send.count && counts.reduce(0, +) == receive.count,
                     "all-gather counts do not match the buffers")
        var mpiCounts = [Int32]()
        for count in counts { mpiCounts.append(try mpiCount(count, "MPI_Allgatherv")) }
        try checkMPI("MPI_Allgatherv",
                     MPI_Allgatherv(send.baseAddress, mpiCounts[rank], T.mpiDatatype, receive.baseAddress,
                                    mpiCounts, displacements(mpiCounts), T.mpiDatatype, handle))
    }

    /// Array form of all-gather with any length per rank: the lengths are exchanged first.
    public func allgather<T: MPIScalar>(_ send: [T]) throws(MPIError) -> [[T]] {
        var counts = [Int64](repeating: 0, count: size)
        var mine = [Int64(send.count)]
        try mine.withUnsafeBufferPointer { (mineBuffer) throws(MPIError) in
            try counts.withUnsafeMutableBufferPointer { (countBuffer) throws(MPIError) in
                try allgather(mineBuffer, into: countBuffer)
            }
        }
        mine = []
        let intCounts = counts.map { Int($0) }
        var receive = [T](repeating: 0, count: intCounts.reduce(0, +))
        try send.withUnsafeBufferPointer { (sendBuffer) throws(MPIError) in
            try receive.withUnsafeMutableBufferPointer { (receiveBuffer) throws(MPIError) in
                try allgather(sendBuffer, into: receiveBuffer, counts: intCounts)
            }
        }
        var result: [[T]] = []
        var offset = 0
        for count in intCounts {
            result.append(Array(receive[offset..<offset + count]))
            offset += count
        }
        return result
    }

    /// Concatenates every rank's `send` (rank r sends `counts[r]` elements) in rank order into
    /// `receive` on `root` only (other ranks may pass an empty `receive`): the logits of a
    /// vocabulary-parallel head, which only the sampling rank needs.
    ///
    /// The corresponding C function is `MPI_Gatherv`.
    public func gather<T: MPIScalar>(_ send: UnsafeBufferPointer<T>, into receive: UnsafeMutableBufferPointer<T>,
                                     counts: [Int], root: Int) throws(MPIError) {
        precondition(counts.count == size && counts[rank] == send.count
                     && (rank != root || counts.reduce(0, +) == receive.count),
                     "gather counts do not match the buffers")
        var mpiCounts = [Int32]()
        for count in counts { mpiCounts.append(try mpiCount(count, "MPI_Gatherv")) }
        try checkMPI("MPI_Gatherv",
                     MPI_Gatherv(send.baseAddress, mpiCounts[rank], T.mpiDatatype, receive.baseAddress,
                                 mpiCounts, displacements(mpiCounts), T.mpiDatatype, Int32(root), handle))
    }

    /// Collects every rank's string, in rank order, on `root` (other ranks get an empty array).
    ///
    /// The corresponding C functions are `MPI_Gather` and `MPI_Gatherv`.
    public func gather(_ string: String, root: Int) throws(MPIError) -> [String] {
        let bytes = Array(string.utf8)
        var counts = [Int32](repeating: 0, count: size)
        var length = Int32(bytes.count)
        try checkMPI("MPI_Gather", MPI_Gather(&length, 1, meshlm_mpi_int32(), &counts, 1,
                                              meshlm_mpi_int32(), Int32(root), handle))
        var receive = [UInt8](repeating: 0, count: rank == root ? Int(counts.reduce(0, +)) : 0)
        let offsets = displacements(counts)
        try checkMPI("MPI_Gatherv", MPI_Gatherv(bytes, length, meshlm_mpi_uint8(), &receive, counts, offsets,
                                                meshlm_mpi_uint8(), Int32(root), handle))
        guard rank == root else { return [] }
        return (0..<size).map { index in
            let start = Int(offsets[index])
            return String(decoding: receive[start..<start + Int(counts[index])], as: UTF8.self)
        }
    }

    /// Sends block r of `send` (size equal blocks) to rank r and receives rank r's block for
    /// this rank into block r of `receive`.
    ///
    /// The corresponding C function is `MPI_Alltoall`.
    public func alltoall<T: MPIScalar>(_ send: UnsafeBufferPointer<T>, into receive: UnsafeMutableBufferPointer<T>) throws(MPIError) {
        precondition(send.count == receive.count && send.count % size == 0, "all-to-all buffers must be size equal blocks")
        let count = try mpiCount(send.count / size, "MPI_Alltoall")
        try checkMPI("MPI_Alltoall", MPI_Alltoall(send.baseAddress, count, T.mpiDatatype,
                                                  receive.baseAddress, count, T.mpiDatatype, handle))
    }

    /// Sends `sendCounts[r]` consecutive elements of `send` to rank r and receives
    /// `receiveCounts[r]` elements from rank r, packed in rank order into `receive`: the exchange
    /// of MoE token dispatch and of MinHash band keys.
    ///
    /// The corresponding C function is `MPI_Alltoallv`.
    public func alltoall<T: MPIScalar>(_ send: UnsafeBufferPointer<T>, sendCounts: [Int],
                                       into receive: UnsafeMutableBufferPointer<T>, receiveCounts: [Int]) throws(MPIError) {
        precondition(sendCounts.count == size && receiveCounts.count == size
                     && sendCounts.reduce(0, +) == send.count && receiveCounts.reduce(0, +) == receive.count,
                     "all-to-all counts do not match the buffers")
        var mpiSend = [Int32]()
        var mpiReceive = [Int32]()
        for count in sendCounts { mpiSend.append(try mpiCount(count, "MPI_Alltoallv")) }
        for count in receiveCounts { mpiReceive.append(try mpiCount(count, "MPI_Alltoallv")) }
        try checkMPI("MPI_Alltoallv",
                     MPI_Alltoallv(send.baseAddress, mpiSend, displacements(mpiSend), T.mpiDatatype,
                                   receive.baseAddress, mpiReceive, displacements(mpiReceive), T.mpiDatatype, handle))
    }

    /// Array form of all-to-all with any counts: `send[r]` goes to rank r; the result's element r
    /// came from rank r. The counts are exchanged first.
    public func alltoall<T: MPIScalar>(_ send: [[T]]) throws(MPIError) -> [[T]] {
        precondition(send.count == size, "all-to-all needs one array per rank")
        let sendCounts = send.map(\.count)
        var receiveCounts64 = [Int64](repeating: 0, count: size)
        let sendCounts64 = sendCounts.map { Int64($0) }
        try sendCounts64.withUnsafeBufferPointer { (sendBuffer) throws(MPIError) in
            try receiveCounts64.withUnsafeMutableBufferPointer { (receiveBuffer) throws(MPIError) in
                try alltoall(sendBuffer, into: receiveBuffer)
            }
        }
        let receiveCounts = receiveCounts64.map { Int($0) }
        let flat = send.flatMap { $0 }
        var receive = [T](repeating: 0, count: receiveCounts.reduce(0, +))
        try flat.withUnsafeBufferPointer { (sendBuffer) throws(MPIError) in
            try receive.withUnsafeMutableBufferPointer { (receiveBuffer) throws(MPIError) in
                try alltoall(sendBuffer, sendCounts: sendCounts, into: receiveBuffer, receiveCounts: receiveCounts)
            }
        }
        var result: [[T]] = []
        var offset = 0
        for count in receiveCounts {
            result.append(Array(receive[offset..<offset + count]))
            offset += count
        }
        return result
    }
}
