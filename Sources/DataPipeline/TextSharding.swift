import Foundation
import Runtime

/// `meshlm data shard-text`: documents (JSONL, `.jsonl.zst`, `.txt`) → tokenizer → token shards
/// and manifest. One process reads the inputs in order and writes every shard, so the output is
/// the same bytes on every run; a failure removes the shards it wrote (no manifest, no dataset).
public enum TextSharding {
    public struct Options: Sendable {
        /// The JSONL field holding the text.
        public var textField: String
        public var writer: TokenShardWriter.Options

        public init(textField: String = "text", writer: TokenShardWriter.Options = .init()) {
            self.textField = textField
            self.writer = writer
        }
    }

    /// Total bytes of the input files (for a progress line's total).
    public static func inputBytes(_ files: [String]) -> Int {
        files.reduce(0) { total, file in
            let size = (try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? NSNumber
            return total + (size?.intValue ?? 0)
        }
    }

    /// Shards `files` (already expanded by `DocumentReader.expand`) into `output`. `progress`
    /// advances by input bytes read.
    @discardableResult
    public static func run(files: [String], output: String, tokenizer: any Tokenizer, options: Options = .init(),
                           progress: ProgressLine? = nil) throws(DataError) -> ShardManifest {
        let writer = try TokenShardWriter(directory: output, tokenizer: tokenizer.identity, options: options.writer)
        do {
            var inputs = [ShardManifest.Input]()
            for file in files {
                let reader = try DocumentReader(path: file, textField: options.textField)
                var reported = 0
                var documents = 0
                var empty = 0
                while let document = try reader.next() {
                    if document.text.isEmpty {
                        empty += 1
                    } else {
                        try writer.append(document: tokenizer.encode(document.text))
                        documents += 1
                    }
                    progress?.advance(by: reader.fileBytesRead - reported)
                    reported = reader.fileBytesRead
                }
                progress?.advance(by: reader.fileBytesRead - reported)
                inputs.append(ShardManifest.Input(path: file, documents: documents, emptyDocuments: empty))
            }
            let manifest = try writer.finish(inputs: inputs)
            progress?.finish()
            return manifest
        } catch {
            writer.abandon()
            throw error
        }
    }
}
