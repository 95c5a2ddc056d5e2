import Foundation
import Runtime

/// Streams documents' token ids into HDF5 token shards of about `shardTokens` tokens each, then
/// writes `manifest.json` (DESIGN §4).
///
/// Every document is followed by the tokenizer's EOS id and lies whole in one shard: a shard is
/// closed before the document that would take it past `shardTokens` (a longer document gets a
/// shard of its own). Each file is written under a temporary name and renamed when complete;
/// the manifest comes last, so a directory without one is not a dataset. The bytes depend only
/// on the documents, their order and the options: the same input gives the same files.
///
/// Tokenized SFT samples (`append(sample:lossMask:)`, `meshlm data sft-tokenize`) are written
/// the same way, without an EOS of their own (the chat template ends each turn), with a
/// `loss_mask` beside `tokens` and `sample_offsets` for `document_offsets`; `finish(inputs:sft:)`
/// records how they were made. Tokenized preference data (`meshlm data pref-tokenize`) is
/// samples with a value each (`sample_values`: a pair's margin, a KTO sample's label), recorded
/// by `finish(inputs:preference:)`. A writer holds one kind.
///
/// A resumable writer (`data tokenize`) commits each shard to a progress ledger
/// (`OUT/.progress/STAGE/NNNNN.done`, the shard's manifest entry) once it is renamed into place,
/// and removes the ledger after the manifest. A directory holding such a ledger with the same
/// fingerprint and no manifest (a run killed mid-way) is resumed: the committed shards are kept,
/// leftovers (temporary files, shard files no ledger entry names) removed, and the caller skips
/// the `resumedDocuments` documents they hold; the result is the same bytes as one uninterrupted
/// run.
///
/// Memory: one shard's tokens (`shardTokens` × 2 or 4 bytes, and one byte each for a mask).
public final class TokenShardWriter {
    public struct Options: Sendable {
        /// Target tokens per shard file.
        public var shardTokens: Int
        /// Tokens per HDF5 chunk (the unit of compression and of partial reads).
        public var chunkTokens: Int
        /// 0 = no compression, 1...9 = deflate level.
        public var deflateLevel: Int
        /// Replace the shard files and manifest of a non-empty directory instead of refusing.
        public var overwrite: Bool

        public init(shardTokens: Int = 1 << 25, chunkTokens: Int = 1 << 16, deflateLevel: Int = 0, overwrite: Bool = false) {
            self.shardTokens = shardTokens
            self.chunkTokens = chunkTokens
            self.deflateLevel = deflateLevel
            self.overwrite = overwrite
        }
    }

    public let directory: String
    public let tokenizer: TokenizerIdentity
    public let options: Options
    public let dtype: TokenDType

    private var shortTokens: [UInt16] = []
    private var wideTokens: [UInt32] = []
    private var documentOffsets: [Int64] = []
    /// SFT samples: 1 where the token is supervised; empty while the writer holds documents.
    private var lossMask: [UInt8] = []
    /// Preference samples: one value per sample; empty for the other kinds.
    private var sampleValues: [Double] = []
    /// Whether samples come with values; nil before the first sample.
    private var holdsValues: Bool?
    /// What was appended first decides the kind; nil before any append.
    private var holdsSamples: Bool?
    private var shards: [ShardManifest.Shard] = []
    private var finished = false
    /// Whether `init` made the directory (then `abandon` removes it again when it is empty).
    private var createdDirectory = false
    /// The ledger of committed shards of a resumable writer; nil otherwise.
    private var ledger: ProgressLedger?
    /// A test hook: `MESHLM_TEST_KILL_AFTER=STAGE:N` makes a resumable writer SIGKILL its
    /// process while shard N is written under its temporary name (after N shards were
    /// committed), to test resuming after `kill -9`.
    private var killAtShard: Int?
    /// Documents in the shards a killed run committed, which this writer kept (0 for a fresh
    /// run): the caller appends the documents after them.
    public private(set) var resumedDocuments = 0
    /// Shards a killed run committed, which this writer kept.
    public private(set) var resumedShards = 0

    /// Tokens in finished shards plus the current one.
    public var tokenCount: Int { shards.reduce(0) { $0 + $1.tokens } + pendingTokenCount }
    /// Documents in finished shards plus the current one.
    public var documentCount: Int { shards.reduce(0) { $0 + $1.documents } + documentOffsets.count }
    private var pendingTokenCount: Int { dtype == .uint16 ? shortTokens.count : wideTokens.count }

    /// The shard file name for index `index`: `shard_00000.h5`.
    public static func shardFileName(_ index: Int) -> String {
        "shard_" + String(repeating: "0", count: max(0, 5 - String(index).count)) + String(index) + ".h5"
    }

    /// Prepares `directory`: created when missing; an existing non-empty one is refused unless
    /// `options.overwrite`, which removes its manifest first (so it stops being a dataset at
    /// once) and then its shard files (and `resumable`'s ledger), or unless `resumable` is given
    /// and the directory holds that stage's ledger and no manifest (a killed run, resumed). An
    /// existing directory must take a file. `resumable` names the ledger's stage and the
    /// fingerprint of the inputs and options (`ProgressLedger`).
    public init(directory: String, tokenizer: TokenizerIdentity, options: Options = Options(),
                resumable: (stage: String, fingerprint: String)? = nil) throws(DataError) {
        guard options.shardTokens >= 1 else { throw DataError("shard size must be at least 1 token, got \(options.shardTokens)") }
        guard options.chunkTokens >= 1 else { throw DataError("chunk size must be at least 1 token, got \(options.chunkTokens)") }
        guard (0...9).contains(options.deflateLevel) else {
            throw DataError("deflate level must be 0 (none) to 9, got \(options.deflateLevel)")
        }
        self.directory = directory
        self.tokenizer = tokenizer
        self.options = options
        self.dtype = TokenDType(vocabSize: tokenizer.vocabSize)
        try prepareDirectory(ledgerStage: resumable?.stage)
        if let resumable {
            let ledger = try ProgressLedger(output: directory, stage: resumable.stage, fingerprint: resumable.fingerprint)
            self.ledger = ledger
            try resume(from: ledger)
            if let hook = ProcessInfo.processInfo.environment["MESHLM_TEST_KILL_AFTER"], hook.hasPrefix(resumable.stage + ":") {
                killAtShard = Int(hook.dropFirst(resumable.stage.count + 1))
            }
        }
    }

    private func prepareDirectory(ledgerStage: String?) throws(DataError) {
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        if manager.fileExists(atPath: directory, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw DataError("\(directory): exists and is not a directory") }
            let entries = (try? manager.contentsOfDirectory(atPath: directory)) ?? []
            if options.overwrite {
                let ours = entries.filter { $0 == ShardManifest.fileName || $0 == ShardManifest.fileName + ".tmp" || Self.isShardFile($0) }
                    .sorted { ($0 == ShardManifest.fileName ? 0 : 1, $0) < ($1 == ShardManifest.fileName ? 0 : 1, $1) }
                for name in ours { try remove(name) }
                if let ledgerStage, ProgressLedger.exists(output: directory, stage: ledgerStage) {
                    try remove(".progress/" + ledgerStage)
                }
            } else if !entries.isEmpty {
                let killed = ledgerStage.map { !entries.contains(ShardManifest.fileName) && ProgressLedger.exists(output: directory, stage: $0) }
                guard killed == true else {
                    throw DataError("\(directory): output directory exists and is not empty (choose another, or pass --overwrite to replace its shards)")
                }
            }
            try OutputPath.checkWritable(directory: directory)
        } else {
            try OutputPath.checkCreatable(directory)
            do {
                try manager.createDirectory(atPath: directory, withIntermediateDirectories: true)
                createdDirectory = true
            } catch {
                throw DataError("\(directory): cannot create the output directory: \(FileProblem.reason(error, path: directory)); choose another --output")
            }
        }
    }

    /// Keeps the shards `ledger` records (checking each file's size) and removes the other
    /// shard files and temporary files a killed run left.
    private func resume(from ledger: ProgressLedger) throws(DataError) {
        while let summary = ledger.summary(at: shards.count) {
            let shard: ShardManifest.Shard
            do {
                shard = try JSONDecoder().decode(ShardManifest.Shard.self, from: Data(summary))
            } catch {
                throw DataError("\(ledger.directory): the entry of shard \(shards.count) is unreadable (\(describe(error))); delete \(directory) and rerun")
            }
            let size = (try? FileManager.default.attributesOfItem(atPath: path(shard.file)))?[.size] as? NSNumber
            guard size?.intValue == shard.bytes else {
                throw DataError("\(path(shard.file)): \(size.map { "\($0) bytes" } ?? "missing"), but the progress ledger "
                                + "recorded \(shard.bytes) bytes; delete \(directory) and rerun")
            }
            shards.append(shard)
        }
        let committed = Set(shards.map(\.file))
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for name in entries.sorted() where (Self.isShardFile(name) && !committed.contains(name)) || name == ShardManifest.fileName + ".tmp" {
            try remove(name)
        }
        resumedShards = shards.count
        resumedDocuments = shards.reduce(0) { $0 + $1.documents }
    }

    private static func isShardFile(_ name: String) -> Bool {
        name.hasPrefix("shard_") && (name.hasSuffix(".h5") || name.hasSuffix(".h5.tmp"))
    }

    private func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }

    private func remove(_ name: String) throws(DataError) {
        do { try FileManager.default.removeItem(atPath: path(name)) } catch {
            throw DataError("\(path(name)): cannot remove: \(FileProblem.reason(error, path: path(name))); remove it by hand or choose another --output")
        }
    }

    /// Appends one document and its EOS. Every id must lie in the tokenizer's vocabulary.
    public func append(document ids: [Int32]) throws(DataError) {
        try start(ids, length: ids.count + 1, samples: false)
        appendTokens(ids)
        appendTokens(CollectionOfOne(tokenizer.eosId))
    }

    /// Appends one tokenized sample: its ids and a loss mask entry per id (1 = supervised), no
    /// EOS added, and for preference data its `value`. Every id must lie in the tokenizer's
    /// vocabulary.
    public func append(sample ids: [Int32], lossMask: [UInt8], value: Double? = nil) throws(DataError) {
        precondition(ids.count == lossMask.count, "a mask entry per token")
        precondition(holdsValues == nil || holdsValues == (value != nil), "every sample has a value, or none")
        try start(ids, length: ids.count, samples: true)
        holdsValues = value != nil
        appendTokens(ids)
        self.lossMask += lossMask
        if let value { sampleValues.append(value) }
    }

    /// Checks the ids, closes the shard when `length` more tokens would overfill it, and records
    /// where the next document or sample starts.
    private func start(_ ids: [Int32], length: Int, samples: Bool) throws(DataError) {
        precondition(!finished, "append after finish")
        precondition(holdsSamples == nil || holdsSamples == samples, "a writer holds documents or SFT samples, not both")
        holdsSamples = samples
        let vocabSize = tokenizer.vocabSize
        for id in ids where id < 0 || Int(id) >= vocabSize {
            throw DataError("token id \(id) of \(samples ? "sample" : "document") \(documentCount) is outside the vocabulary of \(vocabSize) ids")
        }
        if pendingTokenCount > 0, pendingTokenCount + length > options.shardTokens {
            try closeShard()
        }
        documentOffsets.append(Int64(pendingTokenCount))
    }

    private func appendTokens<Ids: Sequence<Int32>>(_ ids: Ids) {
        switch dtype {
        case .uint16: for id in ids { shortTokens.append(UInt16(truncatingIfNeeded: id)) }
        case .uint32: for id in ids { wideTokens.append(UInt32(truncatingIfNeeded: id)) }
        }
    }

    /// Writes the last shard and then the manifest (temporary name, renamed). Returns the manifest.
    /// `sft` (required for a writer of SFT samples) or `preference` (for samples with values)
    /// says how they were made.
    @discardableResult
    public func finish(inputs: [ShardManifest.Input] = [], sft: SFTShardSettings? = nil,
                       preference: PreferenceShardSettings? = nil) throws(DataError) -> ShardManifest {
        precondition(!finished, "finish called twice")
        let settings = sft != nil || preference != nil
        precondition(settings == (holdsSamples ?? settings), "SFT or preference settings go with samples")
        precondition((preference != nil) == (holdsValues ?? (preference != nil)), "preference settings go with samples that have values")
        if pendingTokenCount > 0 { try closeShard() }
        finished = true
        let manifest = ShardManifest(tokenizer: tokenizer, dtype: dtype, chunkTokens: options.chunkTokens,
                                     deflateLevel: options.deflateLevel, shards: shards, inputs: inputs, sft: sft, preference: preference)
        let temporary = path(ShardManifest.fileName + ".tmp")
        guard FileManager.default.createFile(atPath: temporary, contents: manifest.encoded()) else {
            throw DataError("\(temporary): cannot be written: \(FileProblem.reason(writing: temporary)); check the disk has space, or choose another --output")
        }
        try rename(temporary, to: path(ShardManifest.fileName))
        ledger?.remove()
        return manifest
    }

    /// Removes what this writer wrote (after a failure), so no partial output remains: its shard
    /// files, and the directory itself if this writer created it and nothing else is in it.
    public func abandon() {
        finished = true
        let names = shards.map(\.file) + [Self.shardFileName(shards.count) + ".tmp", ShardManifest.fileName + ".tmp"]
        for name in names where FileManager.default.fileExists(atPath: path(name)) { try? remove(name) }
        shards.removeAll()
        ledger?.remove()
        if createdDirectory, (try? FileManager.default.contentsOfDirectory(atPath: directory))?.isEmpty == true {
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    private func closeShard() throws(DataError) {
        let name = Self.shardFileName(shards.count)
        let temporary = path(name + ".tmp")
        do {
            try writeShardFile(temporary)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw DataError("\(temporary): cannot write the shard: \(error.reason); check the disk has space, or choose another --output")
        }
        if killAtShard == shards.count { kill(getpid(), SIGKILL) }
        if ledger != nil { try synchronize(temporary) }
        let attributes = try? FileManager.default.attributesOfItem(atPath: temporary)
        let bytes = (attributes?[.size] as? NSNumber)?.intValue ?? 0
        let checksum = try SHA256.hex(ofFile: temporary)
        try rename(temporary, to: path(name))
        let shard = ShardManifest.Shard(file: name, tokens: pendingTokenCount, documents: documentOffsets.count,
                                        bytes: bytes, sha256: checksum)
        shards.append(shard)
        if let ledger {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let entry: Data
            do { entry = try encoder.encode(shard) } catch { throw DataError("\(path(name)): cannot encode its ledger entry: \(error)") }
            try ledger.markFinished(at: shards.count - 1, summary: [UInt8](entry))
        }
        shortTokens.removeAll(keepingCapacity: true)
        wideTokens.removeAll(keepingCapacity: true)
        documentOffsets.removeAll(keepingCapacity: true)
        lossMask.removeAll(keepingCapacity: true)
        sampleValues.removeAll(keepingCapacity: true)
    }

    /// Flushes the file at `path` to the disk: a ledger entry must not outlive its shard's bytes
    /// when the machine goes down.
    private func synchronize(_ path: String) throws(DataError) {
        let descriptor = open(path, O_RDONLY)
        defer { if descriptor >= 0 { close(descriptor) } }
        guard descriptor >= 0, fsync(descriptor) == 0 else {
            throw DataError("\(path): fsync failed: \(String(cString: strerror(errno)))")
        }
    }

    /// The HDF5 file is closed when `file` goes out of scope here, before the caller reads it back.
    private func writeShardFile(_ path: String) throws(HDF5Error) {
        let file = try HDF5File.create(path)
        switch dtype {
        case .uint16:
            try file.write(shortTokens, dataset: ShardManifest.tokensDataset, chunkRows: options.chunkTokens,
                           deflateLevel: options.deflateLevel)
        case .uint32:
            try file.write(wideTokens, dataset: ShardManifest.tokensDataset, chunkRows: options.chunkTokens,
                           deflateLevel: options.deflateLevel)
        }
        if holdsSamples == true {
            try file.write(lossMask, dataset: ShardManifest.lossMaskDataset, chunkRows: options.chunkTokens,
                           deflateLevel: options.deflateLevel)
            try file.write(documentOffsets, dataset: ShardManifest.sampleOffsetsDataset)
            if holdsValues == true { try file.write(sampleValues, dataset: ShardManifest.sampleValuesDataset) }
        } else {
            try file.write(documentOffsets, dataset: ShardManifest.documentOffsetsDataset)
        }
    }

    private func rename(_ source: String, to destination: String) throws(DataError) {
        guard Foundation.rename(source, destination) == 0 else {
            throw DataError("\(destination): cannot rename \(source) into place: \(String(cString: strerror(errno)))")
        }
    }
}
