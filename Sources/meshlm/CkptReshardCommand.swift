import ArgumentParser
import Checkpoint
import Foundation
import Training

struct CkptReshardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reshard",
        abstract: "Rewrite a checkpoint as a run on another mesh would save it (one shard file per rank of that mesh).",
        discussion: """
            Loading never needs this (any mesh reads any checkpoint); it makes the files match the mesh \
            that will read them, e.g. one file per node. OUTPUT is a checkpoints directory: the result \
            is OUTPUT/step_N with OUTPUT/latest naming it. Ranks are in mesh order (tp fastest, then \
            dp, then pp), and pipeline stages split the layers as a run with the checkpoint's seq_len would.
            """)

    @Argument(help: "A step directory, a checkpoints directory or a run directory.") var directory: String
    @Option(parsing: .unconditional, help: "Data-parallel degree of the target mesh.") var dp: Int
    @Option(parsing: .unconditional, help: "ZeRO stage recorded for the target mesh (the files are the same for every stage).") var zero = 1
    @Option(parsing: .unconditional, help: "Tensor-parallel degree of the target mesh.") var tp = 1
    @Option(parsing: .unconditional, help: "Pipeline-parallel degree of the target mesh.") var pp = 1
    @Option(help: "The checkpoints directory to write.") var output: String
    @Option(name: .customLong("model-config"), help: "The model's config.json, for checkpoints without model_config.json.") var modelConfig: String?
    @Option(name: .customLong("zstd-level"), parsing: .unconditional, help: "zstd level of the new frames.") var zstdLevel = 1

    func run() throws {
        try CkptCommand.runTool {
            let reader = try CheckpointReader.locate(directory)
            let mesh = CheckpointMesh(dataParallel: dp, zeroStage: zero, tensorParallel: tp, pipelineParallel: pp)
            let model = try CheckpointReshard.modelConfig(of: reader, override: modelConfig)
            try mesh.validate(model: model)
            let written = try CheckpointReshard.reshard(reader, to: mesh, output: output, model: model, compressionLevel: Int32(zstdLevel))
            print("reshard: wrote \(written) for \(mesh) (\(mesh.worldSize) shard file\(mesh.worldSize == 1 ? "" : "s"))")
        }
    }
}
