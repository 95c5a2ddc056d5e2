import ArgumentParser
import Foundation
import Model
import Parallel
import Runtime
import Training

struct MeshCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mesh",
        abstract: "Build the device mesh, check every group's communicator, and print each rank's place in it.",
        discussion: """
            With --model, also checks that the mesh can split that model (heads, layers, experts). With --config (a pretrain \
            config), the degrees come from its parallel section and each rank also prints an estimate of the memory it will \
            hold: parameters, gradients, optimizer state and activations (docs/parallelism.md).
            """)

    @OptionGroup var job: JobOptions

    @Option(parsing: .unconditional, help: "Pipeline parallel degree.") var pp = 1
    @Option(parsing: .unconditional, help: "Data parallel degree (default: what the world size leaves).") var dp: Int?
    @Option(parsing: .unconditional, help: "Context parallel degree.") var cp = 1
    @Option(parsing: .unconditional, help: "Tensor parallel degree.") var tp = 1
    @Option(parsing: .unconditional, help: "Expert parallel degree (carved out of dp × cp).") var ep = 1
    @Option(help: "A model config (configs/model/*.yaml) the mesh must be able to split.") var model: String?
    @Option(help: "A pretrain config (configs/pretrain/*.yaml): its parallel degrees, model and batch; prints memory per rank.") var config: String?
    @Option(name: .customLong("set"), help: "Override a config key: key=value (repeatable; section.key=value with --config).") var overrides: [String] = []
    @Flag(help: "One JSON object per rank instead of the table.") var json = false

    func run() throws {
        try job.runJob { context in
            let world = context.world
            let (mesh, settings) = try world.collectively { () throws -> (DeviceMesh, PretrainConfig?) in
                if let config {
                    let settings = try ConfigLoader.load(PretrainConfig.self, path: config, overrides: overrides, includes: ["model"])
                    let parallel = settings.parallel
                    let dims = try ParallelDims(worldSize: world.size, pipelineDegree: parallel.pp, dataDegree: parallel.dp == 0 ? nil : parallel.dp,
                                                contextDegree: parallel.cp, tensorDegree: parallel.tp, expertDegree: parallel.ep)
                    try ModelSplit.validate(settings.model, on: dims, virtualStages: parallel.virtualStages)
                    return (try DeviceMesh(world: world, dims: dims), settings)
                }
                let dims = try ParallelDims(worldSize: world.size, pipelineDegree: pp, dataDegree: dp,
                                            contextDegree: cp, tensorDegree: tp, expertDegree: ep)
                if let model {
                    let config = try ConfigLoader.load(LlamaConfig.self, path: model, overrides: overrides)
                    try ModelSplit.validate(config, on: dims)
                }
                return (try DeviceMesh(world: world, dims: dims), nil)
            }
            let groups = MeshGroup.allCases.filter { mesh.dims.expertDegree > 1 || ($0 != .expert && $0 != .expertData) }
            // Each group's members as its own communicator sees them, checked against the mesh
            // arithmetic: a wrong split cannot print a plausible table.
            var observed: [MeshGroup: [Int]] = [:]
            try world.collectively {
                for group in groups {
                    let members = try mesh[group].allgather([Int64(world.rank)])
                    let ranks = members.flatMap { $0 }.map { Int($0) }
                    let expected = mesh.dims.members(of: group, withRank: world.rank)
                    guard ranks == expected else {
                        throw MeshError("\(group.rawValue) communicator holds ranks \(ranks), expected \(expected)")
                    }
                    observed[group] = ranks
                }
            }
            let line = json ? jsonLine(mesh, observed, groups) : tableLine(mesh, observed, groups)
            let lines = try world.gather(line, root: 0)
            if !json {
                context.log.info("mesh: \(mesh.dims); rank order tp fastest, then cp, dp, pp")
                context.log.info(tableHeader(groups))
            }
            for line in lines { context.log.info(line) }
            if let settings { try printMemory(settings, mesh, context) }
        }
    }

    /// Each rank's estimate, printed by rank 0 in rank order.
    private func printMemory(_ settings: PretrainConfig, _ mesh: DeviceMesh, _ context: JobContext) throws {
        let estimate = MemoryEstimate(config: settings, dims: mesh.dims, coordinates: mesh.coordinates)
        func megabytes(_ bytes: Int) -> String { String(format: "%.1f", Double(bytes) / 1e6) }
        let line = json
            ? "{\"rank\":\(mesh.world.rank),\"parameters_bytes\":\(estimate.parameters),\"gradients_bytes\":\(estimate.gradients),"
                + "\"optimizer_bytes\":\(estimate.optimizerState),\"activations_bytes\":\(estimate.activations),\"total_bytes\":\(estimate.total)}"
            : String(mesh.world.rank).padding(6) + [estimate.parameters, estimate.gradients, estimate.optimizerState,
                                                      estimate.activations, estimate.total].map { megabytes($0).padding(14) }.joined()
        let lines = try mesh.world.gather(line, root: 0)
        if !json {
            context.log.info("memory per rank (MB, estimated from the layouts; ZeRO stage \(settings.parallel.zeroStage), "
                             + "micro-batch \(settings.train.microBatchSize) × \(settings.train.seqLen)\(settings.train.recompute ? ", recompute" : "")):")
            context.log.info("rank".padding(6) + ["parameters", "gradients", "optimizer", "activations", "total"].map { $0.padding(14) }.joined())
        }
        for line in lines { context.log.info(line) }
    }

    private func tableHeader(_ groups: [MeshGroup]) -> String {
        let fixed = "rank".padding(6) + "host".padding(14) + "pp dp cp tp ep  "
        return fixed + groups.map { $0.rawValue.padding(16) }.joined()
    }

    private func tableLine(_ mesh: DeviceMesh, _ observed: [MeshGroup: [Int]], _ groups: [MeshGroup]) -> String {
        let c = mesh.coordinates
        let coordinates = [c.pipeline, c.data, c.context, c.tensor, c.expert].map { String($0).padding(3) }.joined()
        let members = groups.map { (observed[$0] ?? []).map(String.init).joined(separator: ",").padding(16) }.joined()
        return String(mesh.world.rank).padding(6) + hostName().padding(14) + coordinates + " " + members
    }

    private func jsonLine(_ mesh: DeviceMesh, _ observed: [MeshGroup: [Int]], _ groups: [MeshGroup]) -> String {
        let c = mesh.coordinates
        let groupText = groups.map { "\"\($0.rawValue)\":[\((observed[$0] ?? []).map(String.init).joined(separator: ","))]" }
        return "{\"rank\":\(mesh.world.rank),\"host\":\"\(hostName())\",\"pp\":\(c.pipeline),\"dp\":\(c.data),\"cp\":\(c.context),"
            + "\"tp\":\(c.tensor),\"ep\":\(c.expert),\"groups\":{\(groupText.joined(separator: ","))}}"
    }
}

func hostName() -> String {
    ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "?"
}

extension String {
    /// Left-aligned in `width` columns (at least one space after).
    func padding(_ width: Int) -> String {
        count >= width ? self + " " : self + String(repeating: " ", count: width - count)
    }
}
extension Int {
    fileprivate func padding(_ width: Int) -> String { String(self).padding(width) }
}
