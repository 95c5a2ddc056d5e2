import ArgumentParser

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure MeshLM against this machine's ceilings (a table, or --json lines).",
        subcommands: [BenchGemmCommand.self, BenchKernelsCommand.self, BenchAllreduceCommand.self, BenchTrainCommand.self,
                       BenchCheckpointCommand.self, BenchTokenizerCommand.self, BenchDecodeCommand.self, BenchExpertsCommand.self])
}
