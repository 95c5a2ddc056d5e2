import ArgumentParser

@main
struct MeshLMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "meshlm",
        abstract: "Train, tune and serve Llama-style language models on CPU clusters with MPI.",
        discussion: """
            Every command is SPMD: run it plain (one rank), under `mpirun -np N`, or under `srun`.
            Documentation: docs/ in the source tree.
            """,
        subcommands: [PretrainCommand.self, SFTCommand.self, DPOCommand.self, KTOCommand.self, RewardCommand.self, EvalCommand.self, CkptCommand.self, DataCommand.self, TokenizerCommand.self,
                      GenerateCommand.self, ServeCommand.self, PlotCommand.self, MeshCommand.self, BenchCommand.self]
    )

    static func main() {
        MachineSetup.restartWithoutForcedCoreType()
        main(nil)
    }
}
