/// A group of ranks that communicate along one or more mesh axes.
public enum MeshGroup: String, CaseIterable, Sendable {
    /// Same pp, dp, cp: the ranks that split one layer's matrices (TP collectives).
    case tensor
    /// Same pp, dp, tp: the ranks that split one sequence (ring or all-to-all attention).
    case context
    /// Same pp, cp, tp: the data-parallel replicas.
    case data
    /// Same dp, cp, tp: the stages of one pipeline (point-to-point activations).
    case pipeline
    /// Same pp, tp: dp × cp, the group that gradients are reduced over and ZeRO shards across.
    case dataContext = "data_context"
    /// Same dp, cp: pp × tp, the ranks holding different shards of one model replica (global
    /// gradient norm, loss broadcast).
    case modelParallel = "model_parallel"
    /// Consecutive ep ranks of a dp × cp group: the ranks that exchange MoE tokens all-to-all.
    case expert
    /// Same pp, tp and expert index: the replicas of the same experts (their gradient reduction).
    case expertData = "expert_data"

    /// A value equal for exactly the ranks in the same group.
    func key(_ c: MeshCoordinates, _ dims: ParallelDims) -> Int {
        switch self {
        case .tensor: return (c.pipeline * dims.dataDegree + c.data) * dims.contextDegree + c.context
        case .context: return (c.pipeline * dims.dataDegree + c.data) * dims.tensorDegree + c.tensor
        case .data: return (c.pipeline * dims.contextDegree + c.context) * dims.tensorDegree + c.tensor
        case .pipeline: return (c.data * dims.contextDegree + c.context) * dims.tensorDegree + c.tensor
        case .dataContext: return c.pipeline * dims.tensorDegree + c.tensor
        case .modelParallel: return c.data * dims.contextDegree + c.context
        case .expert: return (c.pipeline * dims.tensorDegree + c.tensor) * dims.worldSize + c.expertData
        case .expertData: return (c.pipeline * dims.tensorDegree + c.tensor) * dims.worldSize + c.expert
        }
    }
}

extension ParallelDims {
    /// The world ranks in `group` with `rank`, in ascending order (which is also their order
    /// inside the group's communicator).
    public func members(of group: MeshGroup, withRank rank: Int) -> [Int] {
        let key = group.key(coordinates(ofRank: rank), self)
        return (0..<worldSize).filter { group.key(coordinates(ofRank: $0), self) == key }
    }
}

/// The device mesh of DESIGN §3: the parallel degrees, this rank's coordinates, and one
/// communicator per axis and per combination the parallel layers need.
///
/// Every communicator comes from `MPI_Comm_split` of the world, keyed by world rank, so a
/// group's rank order is the world order of its members.
public final class DeviceMesh: @unchecked Sendable {
    public let dims: ParallelDims
    public let world: Communicator
    public let coordinates: MeshCoordinates
    private let groups: [MeshGroup: Communicator]

    /// Builds the mesh; collective over `world`. `dims.worldSize` must equal `world.size`.
    public init(world: Communicator, dims: ParallelDims) throws {
        precondition(dims.worldSize == world.size, "ParallelDims was validated for another world size")
        self.dims = dims
        self.world = world
        self.coordinates = dims.coordinates(ofRank: world.rank)
        var groups: [MeshGroup: Communicator] = [:]
        for group in MeshGroup.allCases {
            let color = group.key(coordinates, dims)
            guard let communicator = try world.split(color: color, key: world.rank) else {
                throw MeshError("MPI_Comm_split gave rank \(world.rank) no \(group.rawValue) group")
            }
            groups[group] = communicator
        }
        self.groups = groups
    }

    /// The communicator of `group` that this rank belongs to.
    public subscript(group: MeshGroup) -> Communicator {
        guard let communicator = groups[group] else { preconditionFailure("mesh built without \(group)") }
        return communicator
    }

    public var tensor: Communicator { self[.tensor] }
    public var context: Communicator { self[.context] }
    public var data: Communicator { self[.data] }
    public var pipeline: Communicator { self[.pipeline] }
    public var dataContext: Communicator { self[.dataContext] }
    public var modelParallel: Communicator { self[.modelParallel] }
    public var expert: Communicator { self[.expert] }
    public var expertData: Communicator { self[.expertData] }
}
