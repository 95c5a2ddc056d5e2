import DataPipeline
import Foundation
import Runtime

/// `meshlm data sft-tokenize`: SFT records → chat template → ids and loss mask → fitted to
/// `seq_len` (`SampleSharding`), with a manifest whose `sft` section records how.
public enum SFTSharding {
    public typealias Options = SampleSharding.Options

    /// The inputs: the record files in order, read with `format` and `tags`.
    public struct Inputs {
        public var files: [String]
        public var format: SFTFormat
        public var tags: ShareGPTTags

        public init(files: [String], format: SFTFormat, tags: ShareGPTTags) {
            self.files = files
            self.format = format
            self.tags = tags
        }
    }

    /// What a sample became.
    private enum Fit: UInt8 { case kept = 0, truncated = 1, dropped = 2 }

    /// Tokenizes `inputs` into `output` with every rank of `world` (call it on all of them; rank
    /// 0 writes and returns the manifest, the others nil), or alone when `world` is nil.
    /// `settings` (counts zero) is recorded in the manifest with the counts filled in; its
    /// `sequenceLength` and `truncation` fit the samples.
    public static func run(inputs: Inputs, output: String, tokenization: SFTTokenization, settings: SFTShardSettings,
                           options: Options = .init(), world: Communicator?) throws -> ShardManifest? {
        precondition(inputs.format == settings.format && inputs.tags == settings.tags, "the settings record how the inputs are read")
        let (sequenceLength, truncation) = (settings.sequenceLength, settings.truncation)
        var settings = settings
        return try SampleSharding.run(
            files: inputs.files, open: { try SFTRecordReader(path: $0, format: inputs.format, tags: inputs.tags) },
            make: { record in
                switch try tokenization.tokenize(record).fitted(to: sequenceLength, truncation: truncation) {
                case .kept(let sample): return .init(samples: [sample], code: Fit.kept.rawValue)
                case .truncated(let sample): return .init(samples: [sample], code: Fit.truncated.rawValue)
                case .dropped: return .init(samples: [], code: Fit.dropped.rawValue)
                }
            },
            output: output, tokenizer: tokenization.tokenizer.identity, options: options, world: world,
            written: { outcome in
                switch Fit(rawValue: outcome.code) {
                case .dropped?: settings.droppedSamples += 1
                case .truncated?: settings.truncatedSamples += 1
                default: break
                }
                settings.supervisedTokens += outcome.samples.reduce(0) { $0 + $1.supervisedCount }
            },
            finish: { writer, inputs in try writer.finish(inputs: inputs, sft: settings) })
    }
}
