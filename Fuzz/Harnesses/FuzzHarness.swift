import Checkpoint
import DataPipeline
import Foundation
import Runtime
import Serving
import ServingHTTP
import Training

/// One parser that reads user bytes, driven the way the product drives it. The fuzzer
/// (`meshlm-fuzz`, tools/fuzz.sh) and the regression test (Tests/FuzzRegressionTests) call the
/// same `run`: a parser may throw its own error type for bad bytes, never trap, hang or throw
/// anything else (DESIGN §6).
public enum FuzzHarness: String, CaseIterable, Sendable {
    /// JSONL lines read by every data stage (`RecordReader`, `JSONObjectScanner`, `JSONString`).
    case jsonl
    /// `--html` inputs (`HTMLTextExtractor`).
    case html
    /// A Hugging Face tokenizer.json (`TokenizerJSON`, then encoding with the model it gives).
    case tokenizerJSON = "tokenizer-json"
    /// A training config (`ConfigLoader` over Yams into `PretrainConfig`, validated).
    case config
    /// A safetensors file's header (`SafetensorsFile`).
    case safetensors
    /// A checkpoint's index.json (`CheckpointIndex.decode`).
    case checkpointIndex = "checkpoint-index"
    /// A token shard directory's manifest.json (`ShardManifest`).
    case manifest
    /// A token shard's HDF5 datasets as `ShardSetStore` checks them (`HDF5File`).
    case hdf5Metadata = "hdf5-metadata"
    /// A body of `POST /v1/completions` and `/v1/chat/completions` (`OpenAIRequestCheck`).
    case openAIRequest = "openai-request"
    /// A Jinja chat template, parsed and rendered over a short conversation (`ChatTemplateRenderer`).
    case chatTemplate = "chat-template"

    /// Runs `bytes` through the parser. Throws what the parser throws.
    public func run(_ bytes: [UInt8]) throws {
        switch self {
        case .jsonl:
            let unit = WorkUnit(index: 0, path: "fuzz.jsonl", format: .jsonl, name: "fuzz", bytes: bytes.count)
            for policy in [InputErrorPolicy.skip, .fail] {
                let reader = RecordReader(jsonl: bytes, unit: unit, options: RecordReaderOptions(onError: policy))
                while try reader.next() != nil {}
            }
        case .html:
            _ = HTMLTextExtractor.text(of: bytes)
        case .tokenizerJSON:
            let model = try TokenizerJSON.parse(Data(bytes), path: "tokenizer.json")
            let tokenizer = try BPETokenizer(model: model, name: "tokenizer.json")
            let ids = tokenizer.encodeWithSpecialTokens("Hello, world! 123 <|end_of_text|> naïve  \n\ttabs")
            _ = tokenizer.decode(ids)
            _ = tokenizer.decodeBytes(ids, includeSpecialTokens: true)
        case .config:
            guard let text = String(data: Data(bytes), encoding: .utf8) else {
                throw ConfigError(source: "fuzz.yaml", key: "", message: "config file is not UTF-8 text")
            }
            _ = try ConfigLoader.decode(PretrainConfig.self, yaml: text, source: "fuzz.yaml")
        case .safetensors:
            _ = try SafetensorsFile.header(ofFile: Data(bytes), path: "model.safetensors")
        case .checkpointIndex:
            _ = try CheckpointIndex.decode(Data(bytes), file: "index.json")
        case .manifest:
            _ = try ShardManifest.decode(Data(bytes), path: "manifest.json")
        case .hdf5Metadata:
            try Self.readShardMetadata(bytes)
        case .openAIRequest:
            // Both endpoints read every body; the first error of either is the answer.
            var failure: ServingError?
            do { try OpenAIRequestCheck.completion(Data(bytes)) } catch { failure = error }
            do { try OpenAIRequestCheck.chat(Data(bytes)) } catch { failure = failure ?? error }
            if let failure { throw failure }
        case .chatTemplate:
            let renderer = try ChatTemplateRenderer(template: String(decoding: bytes, as: UTF8.self))
            _ = try renderer.render(conversation: [("system", "Be brief."), ("user", "Hi <b>there</b>"), ("assistant", "Hello."),
                                                   ("user", "Again?")],
                                    addGenerationPrompt: true,
                                    specialTokens: ["bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"],
                                    now: Date(timeIntervalSince1970: 1_700_000_000))
        }
    }

    /// Whether `error` is one the parser throws for bad input (its own, clear error type) rather
    /// than a sign of a bug.
    public func isParserError(_ error: any Error) -> Bool {
        switch self {
        case .jsonl, .html, .tokenizerJSON, .manifest: error is DataError
        case .config: error is ConfigError
        case .safetensors, .checkpointIndex: error is CheckpointError
        case .hdf5Metadata: error is HDF5Error
        case .openAIRequest: error is ServingError
        case .chatTemplate: error is ChatTemplateError
        }
    }

    /// The HDF5 checks `ShardSetStore` makes on a shard file (each dataset's shape), and the
    /// offsets read `SampleShardSet` makes, on `bytes` written to a scratch file.
    private static func readShardMetadata(_ bytes: [UInt8]) throws {
        let path = NSTemporaryDirectory() + "/meshlm-fuzz-\(getpid()).h5"
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
            preconditionFailure("cannot write the scratch file \(path)")
        }
        defer { try? FileManager.default.removeItem(atPath: path) }
        let file = try HDF5File.open(path)
        var failure: HDF5Error?
        for dataset in [ShardManifest.tokensDataset, ShardManifest.documentOffsetsDataset, ShardManifest.sampleOffsetsDataset,
                        ShardManifest.lossMaskDataset, ShardManifest.sampleValuesDataset] where file.contains(dataset) {
            do {
                let shape = try file.shape(of: dataset)
                // Reads only what a small shard holds, so a header claiming billions of rows
                // costs nothing here (the reader's allocation is its own concern, checked below).
                if shape.count == 1, shape[0] <= 1 << 16 {
                    _ = try file.read(Int64.self, dataset: dataset)
                }
            } catch {
                failure = failure ?? error
            }
        }
        if let failure { throw failure }
    }
}
