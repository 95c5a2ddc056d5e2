import DataPipeline
import Foundation
import Runtime

/// A reader of one input file's records in order: SFT samples, preference pairs, KTO samples.
public protocol SampleRecordReader: AnyObject {
    associatedtype Record
    var path: String { get }
    /// The next record, or nil at the end of the file; a bad one throws with its `file:line`.
    func next() throws(DataError) -> Record?
}

extension SFTRecordReader: SampleRecordReader {}
extension PreferenceRecordReader: SampleRecordReader {}
extension UnpairedRecordReader: SampleRecordReader {}

/// Records (JSONL, plain or `.zst`) → tokenized, fitted samples → HDF5 sample shards and a
/// manifest: the streaming of `meshlm data sft-tokenize` and `meshlm data pref-tokenize`
/// (`SFTSharding`, `PreferenceSharding` say what a record becomes and what the manifest records).
///
/// As `TextSharding`: every rank reads the records in the same order, a batch at a time; record
/// i of a batch is tokenized by rank i mod ranks; the ids, masks, lengths, values and outcomes are
/// all-gathered and rank 0 writes them in record order. So the files are the same bytes on any
/// number of ranks, and memory holds one batch and one shard. A bad record stops every rank
/// with its `file:line`; a failure removes the shards written (no manifest, no dataset).
public enum SampleSharding {
    public struct Options: Sendable {
        public var writer: TokenShardWriter.Options
        /// Records tokenized between two gathers.
        public var batchSamples: Int

        public init(writer: TokenShardWriter.Options = .init(), batchSamples: Int = 2048) {
            self.writer = writer
            self.batchSamples = batchSamples
        }
    }

    /// What one record became on the rank that tokenized it: the samples to write (none when it
    /// is left out), a value per sample for data that stores one (else none), and the caller's
    /// code for what fitting did, which rank 0 counts.
    public struct Outcome: Sendable, Equatable {
        public var samples: [TokenizedSample]
        public var values: [Double]
        public var code: UInt8

        public init(samples: [TokenizedSample], values: [Double] = [], code: UInt8) {
            precondition(values.isEmpty || values.count == samples.count, "a value per sample, or none")
            self.samples = samples
            self.values = values
            self.code = code
        }
    }

    /// Tokenizes the records of `files` (opened with `open`, each made into samples by `make`)
    /// into `output` with every rank of `world` (call it on all of them), or alone when `world`
    /// is nil. `fileEnded` sees each reader after its last record (every rank); `written` sees
    /// each record's outcome in record order and `finish` writes the manifest (rank 0 only, which
    /// returns it; the others return nil).
    public static func run<Reader: SampleRecordReader>(
        files: [String], open: (String) throws -> Reader, make: (Reader.Record) throws -> Outcome,
        output: String, tokenizer: TokenizerIdentity, options: Options, world: Communicator?,
        fileEnded: (Reader) -> Void = { _ in }, written: (Outcome) -> Void,
        finish: (TokenShardWriter, [ShardManifest.Input]) throws -> ShardManifest
    ) throws -> ShardManifest? {
        let rank = world?.rank ?? 0
        let ranks = world?.size ?? 1
        let writer = try Communicator.collectively(on: world) {
            rank == 0 ? try TokenShardWriter(directory: output, tokenizer: tokenizer, options: options.writer) : nil
        }
        do {
            var manifestInputs: [ShardManifest.Input] = []
            var batch: [Reader.Record] = []
            var fileIndex = 0
            var reader: Reader?
            var recordsOfFile = 0
            // Reads records into `batch` until it is full or the inputs end; true at the end.
            func fill() throws -> Bool {
                while batch.count < options.batchSamples {
                    if reader == nil {
                        guard fileIndex < files.count else { return true }
                        reader = try open(files[fileIndex])
                        recordsOfFile = 0
                    }
                    guard let current = reader else { return true }
                    if let record = try current.next() {
                        batch.append(record)
                        recordsOfFile += 1
                    } else {
                        manifestInputs.append(ShardManifest.Input(path: current.path, documents: recordsOfFile, emptyDocuments: 0))
                        fileEnded(current)
                        reader = nil
                        fileIndex += 1
                    }
                }
                return false
            }
            // Makes this rank's share of `batch`; rank 0 writes the whole batch in order.
            func flush() throws {
                var ids: [Int32] = [], masks: [UInt8] = [], lengths: [Int64] = [], values: [Double] = []
                var sampleCounts: [UInt8] = [], codes: [UInt8] = []
                for index in stride(from: rank, to: batch.count, by: ranks) {
                    let outcome = try make(batch[index])
                    codes.append(outcome.code)
                    sampleCounts.append(UInt8(outcome.samples.count))
                    values += outcome.values
                    for sample in outcome.samples {
                        lengths.append(Int64(sample.ids.count))
                        ids += sample.ids
                        masks += sample.supervised.map { $0 ? 1 : 0 }
                    }
                }
                var all = (ids: [ids], masks: [masks], lengths: [lengths], values: [values], sampleCounts: [sampleCounts], codes: [codes])
                if let world, ranks > 1 {
                    all = (try world.allgather(ids), try world.allgather(masks), try world.allgather(lengths), try world.allgather(values),
                           try world.allgather(sampleCounts), try world.allgather(codes))
                }
                if let writer {
                    // Per owning rank: the next sample's index and its first token's.
                    var samples = [Int](repeating: 0, count: ranks), tokens = [Int](repeating: 0, count: ranks)
                    for index in 0..<batch.count {
                        let owner = index % ranks, slot = index / ranks
                        let first = samples[owner]
                        var outcome = Outcome(samples: [], code: all.codes[owner][slot])
                        for sampleIndex in first..<first + Int(all.sampleCounts[owner][slot]) {
                            let span = tokens[owner]..<tokens[owner] + Int(all.lengths[owner][sampleIndex])
                            let mask = Array(all.masks[owner][span])
                            let value = all.values[owner].isEmpty ? nil : all.values[owner][sampleIndex]
                            try writer.append(sample: Array(all.ids[owner][span]), lossMask: mask, value: value)
                            outcome.samples.append(TokenizedSample(ids: Array(all.ids[owner][span]), supervised: mask.map { $0 != 0 }))
                            if let value { outcome.values.append(value) }
                            tokens[owner] = span.upperBound
                        }
                        samples[owner] = first + outcome.samples.count
                        written(outcome)
                    }
                }
                batch.removeAll(keepingCapacity: true)
            }
            var finished = false
            while !finished {
                finished = try Communicator.collectively(on: world) { try fill() }
                try Communicator.collectively(on: world) { try flush() }
            }
            return try Communicator.collectively(on: world) { try writer.map { try finish($0, manifestInputs) } }
        } catch {
            writer?.abandon()
            throw error
        }
    }
}
