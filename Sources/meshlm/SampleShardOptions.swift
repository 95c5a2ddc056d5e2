import ArgumentParser
import DataPipeline
import Training

/// The output options `meshlm data sft-tokenize` and `meshlm data pref-tokenize` share.
struct SampleShardOptions: ParsableArguments {
    @Option(name: .long, help: "The sample directory to write (created; must be empty unless --overwrite).") var output: String
    @Option(name: .customLong("shard-tokens"), parsing: .unconditional, help: "Target tokens per shard file.") var shardTokens = 1 << 25
    @Option(name: .long, parsing: .unconditional, help: "Deflate level of the token and mask chunks, 0 (none) to 9.") var deflate = 0
    @Flag(name: .long, help: "Replace the manifest and shards of a non-empty output directory.") var overwrite = false

    func validate() throws {
        if shardTokens < 1 { throw ValidationError("--shard-tokens must be at least 1, got \(shardTokens)") }
        if !(0...9).contains(deflate) { throw ValidationError("--deflate must be 0 to 9, got \(deflate)") }
    }

    var sharding: SampleSharding.Options {
        SampleSharding.Options(writer: TokenShardWriter.Options(shardTokens: shardTokens, deflateLevel: deflate, overwrite: overwrite))
    }
}
