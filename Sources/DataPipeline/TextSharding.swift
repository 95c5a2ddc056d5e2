import Foundation
import Runtime

/// `meshlm data tokenize` (alias `shard-text`): documents (JSONL, `.jsonl.zst`, `.txt`) →
/// tokenizer → token shards and manifest.
///
/// Under MPI every rank reads the inputs in the same order and tokenizes its share of each
/// batch of documents (document i of a batch goes to rank i mod ranks); rank 0 gathers the ids
/// and writes every shard in document order. So the output is the same bytes whatever the rank
/// count. A failure removes the shards written (no manifest, no dataset). A run killed mid-way
/// (`kill -9`, a lost node) leaves its committed shards and their ledger
/// (`OUT/.progress/tokenize`); rerun with the same inputs and options, it keeps them, reads the
/// inputs again without tokenizing the documents they hold, and writes the rest: the same bytes
/// as one uninterrupted run.
public enum TextSharding {
    /// The progress ledger's stage name (`OUT/.progress/tokenize`).
    public static let ledgerStage = "tokenize"

    public struct Options: Sendable {
        /// The JSONL field holding the text.
        public var textField: String
        public var writer: TokenShardWriter.Options
        /// Documents tokenized between two gathers (bounds memory: one batch's text and ids).
        public var batchDocuments: Int

        public init(textField: String = "text", writer: TokenShardWriter.Options = .init(), batchDocuments: Int = 2048) {
            self.textField = textField
            self.writer = writer
            self.batchDocuments = batchDocuments
        }
    }

    /// Total bytes of the input files (for a progress line's total).
    public static func inputBytes(_ files: [String]) -> Int {
        files.reduce(0) { total, file in
            let size = (try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? NSNumber
            return total + (size?.intValue ?? 0)
        }
    }

    /// Shards `files` (already expanded by `DocumentReader.expand`) into `output` in this process.
    /// `progress` advances by input bytes read.
    @discardableResult
    public static func run(files: [String], output: String, tokenizer: any Tokenizer, options: Options = .init(),
                           progress: ProgressLine? = nil) throws(DataError) -> ShardManifest {
        do {
            guard let manifest = try run(files: files, output: output, tokenizer: tokenizer, options: options,
                                         world: nil, progress: progress) else {
                throw DataError("\(output): no manifest was written")
            }
            return manifest
        } catch let error as DataError {
            throw error
        } catch {
            throw DataError("\(output): \(error)")
        }
    }

    /// What a resumed run must share with the killed one: the inputs (paths and sizes), the
    /// tokenizer and every option that changes the bytes.
    static func fingerprint(files: [String], tokenizer: TokenizerIdentity, options: Options) -> String {
        let writer = options.writer
        return "tokenize tokenizer=\(tokenizer.hash) vocab_size=\(tokenizer.vocabSize) eos_id=\(tokenizer.eosId)\n"
            + "text_field=\(options.textField) shard_tokens=\(writer.shardTokens) chunk_tokens=\(writer.chunkTokens) deflate=\(writer.deflateLevel)\n"
            + files.map { "\($0) \(inputBytes([$0]))" }.joined(separator: "\n") + "\n"
    }

    /// Shards `files` with every rank of `world` (call it on all of them; rank 0 writes and
    /// returns the manifest, the others nil), or alone when `world` is nil. Every step that can
    /// fail runs `collectively`, so a bad input (seen by all ranks at the same document) or a
    /// write error on rank 0 ends every rank with one message. Inputs without a document that
    /// has text are an error (no dataset of 0 shards).
    public static func run(files: [String], output: String, tokenizer: any Tokenizer, options: Options,
                           world: Communicator?, progress: ProgressLine?, log: Log? = nil) throws -> ShardManifest? {
        let rank = world?.rank ?? 0
        let ranks = world?.size ?? 1
        let resumable = (stage: ledgerStage, fingerprint: fingerprint(files: files, tokenizer: tokenizer.identity, options: options))
        let writer = try Communicator.collectively(on: world) {
            rank == 0 ? try TokenShardWriter(directory: output, tokenizer: tokenizer.identity, options: options.writer,
                                             resumable: resumable) : nil
        }
        do {
            // Documents the committed shards of a killed run hold: read again, not tokenized.
            var skip = [Int64(writer?.resumedDocuments ?? 0)]
            if let world, ranks > 1 { try world.broadcast(&skip, root: 0) }
            var toSkip = Int(skip[0])
            if let writer, writer.resumedShards > 0 {
                log?.info("\(output): resuming a killed run: keeping its \(writer.resumedShards) shard\(writer.resumedShards == 1 ? "" : "s") "
                          + "(\(writer.resumedDocuments) documents), reading the inputs again from the start")
            }
            var inputs = [ShardManifest.Input]()
            var batch = [String]()
            var fileIndex = 0
            var reader: DocumentReader?
            var reported = 0, documents = 0, empty = 0
            // Reads documents into `batch` until it is full or the inputs end; true at the end.
            func fill() throws -> Bool {
                while batch.count < options.batchDocuments {
                    if reader == nil {
                        guard fileIndex < files.count else { return true }
                        reader = try DocumentReader(path: files[fileIndex], textField: options.textField)
                        reported = 0
                        documents = 0
                        empty = 0
                    }
                    guard let current = reader else { return true }
                    if let document = try current.next() {
                        if document.text.isEmpty { empty += 1 } else {
                            if toSkip > 0 { toSkip -= 1 } else { batch.append(document.text) }
                            documents += 1
                        }
                        progress?.advance(by: 0, secondary: 1)
                    } else {
                        progress?.advance(by: current.fileBytesRead - reported)
                        inputs.append(ShardManifest.Input(path: current.path, documents: documents, emptyDocuments: empty))
                        reader = nil
                        fileIndex += 1
                    }
                    if let current = reader {
                        progress?.advance(by: current.fileBytesRead - reported)
                        reported = current.fileBytesRead
                    }
                }
                return false
            }
            // Tokenizes this rank's share of `batch`; rank 0 writes the whole batch in order.
            func flush() throws {
                var mine = [Int32]()
                var lengths = [Int64]()
                for index in stride(from: rank, to: batch.count, by: ranks) {
                    let ids = tokenizer.encode(batch[index])
                    lengths.append(Int64(ids.count))
                    mine += ids
                }
                let allIds: [[Int32]]
                let allLengths: [[Int64]]
                if let world, ranks > 1 {
                    allIds = try world.allgather(mine)
                    allLengths = try world.allgather(lengths)
                } else {
                    allIds = [mine]
                    allLengths = [lengths]
                }
                if let writer {
                    var offsets = [Int](repeating: 0, count: ranks)
                    for index in 0..<batch.count {
                        let owner = index % ranks
                        let length = Int(allLengths[owner][index / ranks])
                        try writer.append(document: Array(allIds[owner][offsets[owner]..<offsets[owner] + length]))
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
            let manifest = try Communicator.collectively(on: world) { () throws -> ShardManifest? in
                guard inputs.contains(where: { $0.documents > 0 }) else {
                    throw noTextError(files: files, documents: inputs.reduce(0) { $0 + $1.emptyDocuments }, task: "tokenize",
                                      textField: options.textField)
                }
                return try writer?.finish(inputs: inputs)
            }
            progress?.finish()
            return manifest
        } catch {
            writer?.abandon()
            throw error
        }
    }

    /// The error for input `files` that hold no document with text, only `documents` empty
    /// ones (`tokenizer train` and `data tokenize`): which files, what they held, what to do.
    public static func noTextError(files: [String], documents: Int, task: String, textField: String) -> DataError {
        let named = files.prefix(3).joined(separator: ", ") + (files.count > 3 ? " and \(files.count - 3) more files" : "")
        let held = documents == 0 ? "no documents" : "\(documents) document\(documents == 1 ? "" : "s"), all with empty text"
        return DataError("\(named): \(held); nothing to \(task), nothing written "
                         + "(give inputs with text; --text-field names the JSONL field, now '\(textField)')")
    }
}
