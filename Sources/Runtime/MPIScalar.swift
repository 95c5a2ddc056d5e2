import CMPI

/// A Swift scalar with a matching MPI datatype.
public protocol MPIScalar: Numeric, Sendable {
    /// The MPI datatype of one element, e.g. `MPI_FLOAT` for `Float`.
    static var mpiDatatype: MPI_Datatype { get }
}

extension Float: MPIScalar { public static var mpiDatatype: MPI_Datatype { meshlm_mpi_float() } }
extension Double: MPIScalar { public static var mpiDatatype: MPI_Datatype { meshlm_mpi_double() } }
extension Int32: MPIScalar { public static var mpiDatatype: MPI_Datatype { meshlm_mpi_int32() } }
extension Int64: MPIScalar { public static var mpiDatatype: MPI_Datatype { meshlm_mpi_int64() } }
extension UInt8: MPIScalar { public static var mpiDatatype: MPI_Datatype { meshlm_mpi_uint8() } }
extension UInt16: MPIScalar { public static var mpiDatatype: MPI_Datatype { meshlm_mpi_uint16() } }
extension UInt32: MPIScalar { public static var mpiDatatype: MPI_Datatype { meshlm_mpi_uint32() } }
extension UInt64: MPIScalar { public static var mpiDatatype: MPI_Datatype { meshlm_mpi_uint64() } }

/// The reduction applied by allreduce, reduce-scatter and their non-blocking forms.
public enum ReduceOperation: Sendable {
    case sum, max, min

    var mpiOp: MPI_Op {
        switch self {
        case .sum: meshlm_mpi_sum()
        case .max: meshlm_mpi_max()
        case .min: meshlm_mpi_min()
        }
    }
}
