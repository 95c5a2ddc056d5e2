/// The parallel degrees of a job: world size = pp × dp × cp × tp, with expert parallelism (ep)
/// carved out of dp × cp. The contract of DESIGN §3.
public struct ParallelDims: Equatable, Sendable, CustomStringConvertible {
    public let pipelineDegree: Int
    public let dataDegree: Int
    public let contextDegree: Int
    public let tensorDegree: Int
    public let expertDegree: Int
    public let worldSize: Int

    /// Validates the degrees against the world size. `dataDegree: nil` takes what the other axes
    /// leave. Every message lists every factor, so a user can see at once what to change.
    public init(worldSize: Int, pipelineDegree: Int = 1, dataDegree: Int? = nil, contextDegree: Int = 1,
                tensorDegree: Int = 1, expertDegree: Int = 1) throws(MeshError) {
        for (name, degree) in [("pp", pipelineDegree), ("cp", contextDegree), ("tp", tensorDegree),
                               ("ep", expertDegree), ("dp", dataDegree ?? 1)] where degree < 1 {
            throw MeshError("parallel degree \(name) is \(degree); every degree must be at least 1")
        }
        let modelParallel = pipelineDegree * contextDegree * tensorDegree
        let resolvedData: Int
        if let dataDegree {
            let product = modelParallel * dataDegree
            guard product == worldSize else {
                throw MeshError("world size \(worldSize) is not pp \(pipelineDegree) × dp \(dataDegree) × cp \(contextDegree) × tp \(tensorDegree) = \(product)")
            }
            resolvedData = dataDegree
        } else {
            guard worldSize % modelParallel == 0 else {
                throw MeshError("world size \(worldSize) is not divisible by pp \(pipelineDegree) × cp \(contextDegree) × tp \(tensorDegree) = \(modelParallel), so no data-parallel degree dp fits")
            }
            resolvedData = worldSize / modelParallel
        }
        guard (resolvedData * contextDegree) % expertDegree == 0 else {
            throw MeshError("expert parallel degree ep \(expertDegree) must divide dp \(resolvedData) × cp \(contextDegree) = \(resolvedData * contextDegree)")
        }
        self.pipelineDegree = pipelineDegree
        self.dataDegree = resolvedData
        self.contextDegree = contextDegree
        self.tensorDegree = tensorDegree
        self.expertDegree = expertDegree
        self.worldSize = worldSize
    }

    public var description: String {
        "pp \(pipelineDegree) × dp \(dataDegree) × cp \(contextDegree) × tp \(tensorDegree) = \(worldSize) rank\(worldSize == 1 ? "" : "s")"
            + (expertDegree > 1 ? ", ep \(expertDegree) within dp × cp" : "")
    }

    /// The coordinates of a world rank, tp fastest, then cp, dp, pp (Megatron order).
    public func coordinates(ofRank rank: Int) -> MeshCoordinates {
        let tensor = rank % tensorDegree
        let context = (rank / tensorDegree) % contextDegree
        let data = (rank / (tensorDegree * contextDegree)) % dataDegree
        let pipeline = rank / (tensorDegree * contextDegree * dataDegree)
        let dataContext = data * contextDegree + context
        return MeshCoordinates(pipeline: pipeline, data: data, context: context, tensor: tensor,
                               expert: dataContext % expertDegree, expertData: dataContext / expertDegree)
    }

    /// The world rank at the given coordinates (inverse of `coordinates(ofRank:)`).
    public func rank(pipeline: Int, data: Int, context: Int, tensor: Int) -> Int {
        ((pipeline * dataDegree + data) * contextDegree + context) * tensorDegree + tensor
    }
}

/// Where one rank sits in the mesh.
public struct MeshCoordinates: Equatable, Sendable {
    public let pipeline: Int
    public let data: Int
    public let context: Int
    public let tensor: Int
    /// Position within its expert-parallel group (consecutive ranks of the dp × cp group).
    public let expert: Int
    /// Which expert-parallel group of its dp × cp group it belongs to: ranks with the same
    /// `expert` index and different `expertData` hold replicas of the same experts.
    public let expertData: Int
}

/// A mesh that does not fit the world or the model. Its message names every number involved.
public struct MeshError: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
