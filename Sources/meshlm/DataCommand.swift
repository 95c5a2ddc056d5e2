import ArgumentParser

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Turn documents into token shards for training (docs/data.md).",
        subcommands: [DataCleanCommand.self, DataDedupCommand.self, DataTokenizeCommand.self, DataSFTTokenizeCommand.self,
                     DataPrefTokenizeCommand.self])
}
