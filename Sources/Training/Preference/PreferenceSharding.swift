import DataPipeline
import Foundation
import Runtime

/// `meshlm data pref-tokenize`: preference pairs or KTO samples (JSONL) → chat template → ids
/// and loss masks → fitted to `seq_len` as `meshlm dpo`, `reward` and `kto` fit them in memory
/// → sample shards (`SampleSharding`: streaming, the same bytes on any number of ranks).
///
/// Pair p is samples 2p (chosen) and 2p + 1 (rejected), each with the pair's margin as its
/// value (NaN when the line has none); a KTO sample is one sample, valued 1 (desirable) or 0.
/// The manifest's `preference` section records the kind, the settings and the fit counts.
public enum PreferenceSharding {
    public typealias Options = SampleSharding.Options

    /// `PreferenceFit`'s cases as outcome codes.
    private enum Fit: UInt8 { case kept = 0, truncated = 1, tooLong = 2, unsupervised = 3 }

    private static func outcome<Sample>(_ fit: PreferenceFit<Sample>, _ samples: (Sample) -> (samples: [TokenizedSample], values: [Double]))
        -> SampleSharding.Outcome {
        switch fit {
        case .kept(let sample): let made = samples(sample); return .init(samples: made.samples, values: made.values, code: Fit.kept.rawValue)
        case .truncated(let sample): let made = samples(sample); return .init(samples: made.samples, values: made.values, code: Fit.truncated.rawValue)
        case .tooLong: return .init(samples: [], code: Fit.tooLong.rawValue)
        case .unsupervised: return .init(samples: [], code: Fit.unsupervised.rawValue)
        }
    }

    /// Tokenizes the records of `files` into `output` with every rank of `world` (call it on all
    /// of them; rank 0 writes and returns the manifest, the others nil), or alone when `world` is
    /// nil. `settings` (counts zero) says the kind, how pairs are read (`format`, `tags`) and how
    /// samples are fitted; the manifest records it with the counts filled in.
    public static func run(files: [String], output: String, tokenization: PreferenceTokenization, settings: PreferenceShardSettings,
                           options: Options = .init(), world: Communicator?) throws -> ShardManifest? {
        let (sequenceLength, truncation) = (settings.sequenceLength, settings.truncation)
        var settings = settings
        func count(_ outcome: SampleSharding.Outcome) {
            switch Fit(rawValue: outcome.code) {
            case .kept?: settings.kept += 1
            case .truncated?: settings.kept += 1; settings.truncated += 1
            case .tooLong?: settings.tooLong += 1
            case .unsupervised?, nil: settings.unsupervised += 1
            }
        }
        let tokenizer = tokenization.sft.tokenizer.identity
        switch settings.kind {
        case .pairs:
            let (format, tags) = (settings.format ?? .auto, settings.tags ?? ShareGPTTags())
            return try SampleSharding.run(
                files: files, open: { try PreferenceRecordReader(path: $0, format: format, tags: tags) },
                make: { pair in
                    outcome(try tokenization.tokenize(pair).fittedToRow(sequenceLength, truncation: truncation)) { fitted in
                        // NaN marks "no margin", so a pair reads back as it was read.
                        let margin = fitted.margin ?? .nan
                        return ([fitted.chosen, fitted.rejected], [margin, margin])
                    }
                },
                output: output, tokenizer: tokenizer, options: options, world: world,
                fileEnded: { reader in
                    settings.identicalPairs += reader.identicalCount
                    let room = PreferenceRecordReader.identicalSourcesKept - settings.identicalSources.count
                    settings.identicalSources += reader.identicalSources.prefix(max(room, 0))
                },
                written: count, finish: { writer, inputs in try writer.finish(inputs: inputs, preference: settings) })
        case .unpaired:
            return try SampleSharding.run(
                files: files, open: { try UnpairedRecordReader(path: $0) },
                make: { sample in
                    outcome(try tokenization.tokenize(sample).fitted(to: sequenceLength, truncation: truncation)) { fitted in
                        ([fitted.sample], [fitted.desirable ? 1 : 0])
                    }
                },
                output: output, tokenizer: tokenizer, options: options, world: world,
                written: count, finish: { writer, inputs in try writer.finish(inputs: inputs, preference: settings) })
        }
    }
}

extension PreferenceShardSettings {
    /// The fit counts as the in-memory path counts them.
    public var fitCounts: PreferenceFitCounts {
        var counts = PreferenceFitCounts()
        counts.kept = kept - truncated
        counts.truncated = truncated
        counts.tooLong = tooLong
        counts.unsupervised = unsupervised
        return counts
    }

    /// What to print about the pairs skipped as identical, or nil when none was.
    public var identicalSummary: String? { PreferenceRecordReader.identicalSummary(count: identicalPairs, sources: identicalSources) }
}

extension PreferenceShardSet {
    /// The pairs, read into memory (pair p: samples 2p and 2p + 1; `source` names the directory
    /// and the pair's index).
    public func pairs() throws(DataError) -> [TokenizedPair] {
        precondition(settings.kind == .pairs, "a directory of pairs")
        var pairs: [TokenizedPair] = []
        pairs.reserveCapacity(sampleCount / 2)
        for pair in 0..<sampleCount / 2 {
            let margin = values[2 * pair]
            pairs.append(TokenizedPair(source: "\(directory): pair \(pair)", chosen: try sample(2 * pair), rejected: try sample(2 * pair + 1),
                                       margin: margin.isNaN ? nil : margin))
        }
        return pairs
    }

    /// The KTO samples, read into memory.
    public func unpairedSamples() throws(DataError) -> [TokenizedUnpaired] {
        precondition(settings.kind == .unpaired, "a directory of KTO samples")
        var samples: [TokenizedUnpaired] = []
        samples.reserveCapacity(sampleCount)
        for index in 0..<sampleCount {
            samples.append(TokenizedUnpaired(source: "\(directory): sample \(index)", sample: try sample(index), desirable: values[index] == 1))
        }
        return samples
    }
}
