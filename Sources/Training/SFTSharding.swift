import DataPipeline
import Foundation
import Runtime

/// `meshlm data sft-tokenize`: SFT records (JSONL, plain or `.zst`) → chat template → ids and
/// loss mask → fitted to `seq_len` → HDF5 sample shards and a manifest that records how.
///
/// Streaming, as `TextSharding`: every rank reads the records in the same order, a batch at a
/// time; sample i of a batch is tokenized by rank i mod ranks; the ids, masks and lengths are
/// all-gathered and rank 0 writes them in record order. So the files are the same bytes on any
/// number of ranks, and memory holds one batch and one shard. A bad record stops every rank
/// with its `file:line`; a failure removes the shards written (no manifest, no dataset).
public enum SFTSharding {
    public struct Options: Sendable {
        public var writer: TokenShardWriter.Options
        /// Records tokenized between two gathers.
        public var batchSamples: Int

        public init(writer: TokenShardWriter.Options = .init(), batchSamples: Int = 2048) {
            self.writer = writer
            self.batchSamples = batchSamples
        }
    }

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

    /// What a sample became on the rank that tokenized it (sent to rank 0 with its ids).
    private enum Outcome: UInt8 { case kept = 0, truncated = 1, dropped = 2 }

    /// Tokenizes `inputs` into `output` with every rank of `world` (call it on all of them; rank
    /// 0 writes and returns the manifest, the others nil), or alone when `world` is nil.
    /// `settings` (counts zero) is recorded in the manifest with the counts filled in; its
    /// `sequenceLength` and `truncation` fit the samples.
    public static func run(inputs: Inputs, output: String, tokenization: SFTTokenization, settings: SFTShardSettings,
                           options: Options = .init(), world: Communicator?) throws -> ShardManifest? {
        precondition(inputs.format == settings.format && inputs.tags == settings.tags, "the settings record how the inputs are read")
        let rank = world?.rank ?? 0
        let ranks = world?.size ?? 1
        let writer = try Communicator.collectively(on: world) {
            rank == 0 ? try TokenShardWriter(directory: output, tokenizer: tokenization.tokenizer.identity, options: options.writer) : nil
        }
        do {
            var settings = settings
            var manifestInputs: [ShardManifest.Input] = []
            var batch: [SFTSample] = []
            var fileIndex = 0
            var reader: SFTRecordReader?
            var samplesOfFile = 0
            // Reads records into `batch` until it is full or the inputs end; true at the end.
            func fill() throws -> Bool {
                while batch.count < options.batchSamples {
                    if reader == nil {
                        guard fileIndex < inputs.files.count else { return true }
                        reader = try SFTRecordReader(path: inputs.files[fileIndex], format: inputs.format, tags: inputs.tags)
                        samplesOfFile = 0
                    }
                    guard let current = reader else { return true }
                    if let sample = try current.next() {
                        batch.append(sample)
                        samplesOfFile += 1
                    } else {
                        manifestInputs.append(ShardManifest.Input(path: current.path, documents: samplesOfFile, emptyDocuments: 0))
                        reader = nil
                        fileIndex += 1
                    }
                }
                return false
            }
            // Tokenizes and fits this rank's share of `batch`; rank 0 writes the whole batch in order.
            func flush() throws {
                var ids: [Int32] = [], masks: [UInt8] = [], lengths: [Int64] = [], outcomes: [UInt8] = []
                for index in stride(from: rank, to: batch.count, by: ranks) {
                    let outcome: Outcome
                    let fitted: TokenizedSample?
                    switch try tokenization.tokenize(batch[index]).fitted(to: settings.sequenceLength, truncation: settings.truncation) {
                    case .kept(let sample): (outcome, fitted) = (.kept, sample)
                    case .truncated(let sample): (outcome, fitted) = (.truncated, sample)
                    case .dropped: (outcome, fitted) = (.dropped, nil)
                    }
                    outcomes.append(outcome.rawValue)
                    lengths.append(Int64(fitted?.ids.count ?? 0))
                    if let fitted {
                        ids += fitted.ids
                        masks += fitted.supervised.map { $0 ? 1 : 0 }
                    }
                }
                var all = (ids: [ids], masks: [masks], lengths: [lengths], outcomes: [outcomes])
                if let world, ranks > 1 {
                    all = (try world.allgather(ids), try world.allgather(masks), try world.allgather(lengths), try world.allgather(outcomes))
                }
                if let writer {
                    var offsets = [Int](repeating: 0, count: ranks)
                    for index in 0..<batch.count {
                        let owner = index % ranks, slot = index / ranks
                        let length = Int(all.lengths[owner][slot])
                        switch Outcome(rawValue: all.outcomes[owner][slot]) {
                        case .dropped?:
                            settings.droppedSamples += 1
                            continue
                        case .truncated?: settings.truncatedSamples += 1
                        default: break
                        }
                        let span = offsets[owner]..<offsets[owner] + length
                        let mask = Array(all.masks[owner][span])
                        try writer.append(sample: Array(all.ids[owner][span]), lossMask: mask)
                        settings.supervisedTokens += mask.reduce(0) { $0 + Int($1) }
                        offsets[owner] += length
                    }
                }
                batch.removeAll(keepingCapacity: true)
            }
            var finished = false
            while !finished {
                finished = try Communicator.collectively(on: world) { try fill() }
                try Communicator.collectively(on: world) { try flush() }
            }
            return try Communicator.collectively(on: world) { try writer?.finish(inputs: manifestInputs, sft: settings) }
        } catch {
            writer?.abandon()
            throw error
        }
    }
}
