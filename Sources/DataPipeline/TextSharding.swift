import Foundation
import Runtime

/// `meshlm data tokenize` (alias `shard-text`): documents (JSONL, `.jsonl.zst`, `.txt`) →
/// tokenizer → token shards and manifest.
///
/// Under MPI every rank reads the inputs in the same order and tokenizes its share of each
/// batch of documents (document i of a batch goes to rank i mod ranks); rank 0 gathers the ids
/// and writes every shard in document order. So the output is the same bytes whatever the rank
/// count. A failure removes the shards written (no manifest, no dataset).
public enum TextSharding {
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

    /// Shards `files` with every rank of `world` (call it on all of them; rank 0 writes and
    /// returns the manifest, the others nil), or alone when `world` is nil. Every step that can
    /// fail runs `collectively`, so a bad input (seen by all ranks at the same document) or a
    /// write error on rank 0 ends every rank with one message.
    public static func run(files: [String], output: String, tokenizer: any Tokenizer, options: Options,
                           world: Communicator?, progress: ProgressLine?) throws -> ShardManifest? {
        let rank = world?.rank ?? 0
        let ranks = world?.size ?? 1
        let writer = try Communicator.collectively(on: world) {
            rank == 0 ? try TokenShardWriter(directory: output, tokenizer: tokenizer.identity, options: options.writer) : nil
        }
        do {
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
                            batch.append(document.text)
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
            let manifest = try Communicator.collectively(on: world) { try writer?.finish(inputs: inputs) }
            progress?.finish()
            return manifest
        } catch {
            writer?.abandon()
            throw error
        }
    }
}
