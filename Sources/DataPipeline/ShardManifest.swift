import Foundation

/// The element type of a shard's `tokens` dataset: the smallest that holds every id.
public enum TokenDType: String, Codable, Sendable, CaseIterable {
    case uint16, uint32

    /// uint16 when every id fits (vocabulary ≤ 65,536), else uint32.
    public init(vocabSize: Int) {
        self = vocabSize <= 1 << 16 ? .uint16 : .uint32
    }

    public var byteWidth: Int { self == .uint16 ? 2 : 4 }
}

/// `manifest.json` of a shard directory (DESIGN §4): what the shards hold, made by which
/// tokenizer, with a checksum per file. It is written last, so a directory without one is not
/// a dataset (a writer died, or it is still running).
///
/// Three kinds share the layout: token shards (`meshlm data tokenize`: documents ending with EOS,
/// one stream for pretraining), tokenized SFT samples (`meshlm data sft-tokenize`: samples
/// with a loss mask, the `sft` section saying how they were made) and tokenized preference data
/// (`meshlm data pref-tokenize`: samples with a loss mask and a value each, the `preference`
/// section saying what they are and how they were made). A shard's `documents` count is its
/// samples for the last two.
public struct ShardManifest: Codable, Equatable, Sendable {
    public static let fileName = "manifest.json"
    public static let formatName = "meshlm-token-shards"
    public static let sftFormatName = "meshlm-sft-shards"
    public static let preferenceFormatName = "meshlm-preference-shards"
    public static let currentFormatVersion = 1
    /// The 1-D dataset of token ids in every shard file; documents end with `eosId`.
    public static let tokensDataset = "tokens"
    /// The 1-D int64 dataset of each document's first index in `tokens`.
    public static let documentOffsetsDataset = "document_offsets"
    /// SFT shards: the 1-D int64 dataset of each sample's first index in `tokens`.
    public static let sampleOffsetsDataset = "sample_offsets"
    /// SFT shards: the 1-D uint8 dataset beside `tokens`, 1 where the token is supervised.
    public static let lossMaskDataset = "loss_mask"
    /// Preference shards: the 1-D float64 dataset of one value per sample (a pair's margin, a
    /// KTO sample's label: `PreferenceShardSettings.Kind`).
    public static let sampleValuesDataset = "sample_values"

    /// One HDF5 file of the directory.
    public struct Shard: Codable, Equatable, Sendable {
        /// File name inside the directory, e.g. `shard_00000.h5`.
        public var file: String
        public var tokens: Int
        public var documents: Int
        /// File size, checked whenever the directory is opened (catches truncation cheaply).
        public var bytes: Int
        /// Hex SHA-256 of the file, as `sha256sum` prints it.
        public var sha256: String

        public init(file: String, tokens: Int, documents: Int, bytes: Int, sha256: String) {
            self.file = file
            self.tokens = tokens
            self.documents = documents
            self.bytes = bytes
            self.sha256 = sha256
        }
    }

    /// An input the shards were made from (provenance; paths as given on the command line).
    public struct Input: Codable, Equatable, Sendable {
        public var path: String
        public var documents: Int
        /// Documents whose text was empty: not written (an EOS alone teaches nothing), but counted.
        public var emptyDocuments: Int

        public init(path: String, documents: Int, emptyDocuments: Int) {
            self.path = path
            self.documents = documents
            self.emptyDocuments = emptyDocuments
        }

        enum CodingKeys: String, CodingKey {
            case path, documents
            case emptyDocuments = "empty_documents"
        }
    }

    public var format: String
    public var formatVersion: Int
    public var tokenizer: TokenizerIdentity
    public var vocabSize: Int
    public var eosId: Int32
    public var dtype: TokenDType
    /// Tokens per HDF5 chunk of `tokens` (a reader's natural block size).
    public var chunkTokens: Int
    /// 0 = uncompressed, 1...9 = deflate level of the chunks.
    public var deflateLevel: Int
    public var shards: [Shard]
    public var totalTokens: Int
    public var totalDocuments: Int
    public var inputs: [Input]
    /// Tokenized SFT samples: how they were made and counted; nil for the other kinds.
    public var sft: SFTShardSettings?
    /// Tokenized preference data: what it is, how it was made and counted; nil for the other kinds.
    public var preference: PreferenceShardSettings?

    public init(tokenizer: TokenizerIdentity, dtype: TokenDType, chunkTokens: Int, deflateLevel: Int,
                shards: [Shard], inputs: [Input], sft: SFTShardSettings? = nil, preference: PreferenceShardSettings? = nil) {
        precondition(sft == nil || preference == nil, "a directory holds one kind")
        self.format = sft != nil ? Self.sftFormatName : preference != nil ? Self.preferenceFormatName : Self.formatName
        self.formatVersion = Self.currentFormatVersion
        self.tokenizer = tokenizer
        self.vocabSize = tokenizer.vocabSize
        self.eosId = tokenizer.eosId
        self.dtype = dtype
        self.chunkTokens = chunkTokens
        self.deflateLevel = deflateLevel
        self.shards = shards
        self.totalTokens = shards.reduce(0) { $0 + $1.tokens }
        self.totalDocuments = shards.reduce(0) { $0 + $1.documents }
        self.inputs = inputs
        self.sft = sft
        self.preference = preference
    }

    /// Whether the shards hold samples with a loss mask (SFT or preference), not documents.
    public var holdsSamples: Bool { sft != nil || preference != nil }

    /// The name of the dataset of each document's (or sample's) first index in `tokens`.
    public var offsetsDataset: String { holdsSamples ? Self.sampleOffsetsDataset : Self.documentOffsetsDataset }

    /// What the directory holds and which command makes it, for messages.
    public var contents: String {
        if sft != nil { return "tokenized SFT samples (meshlm data sft-tokenize)" }
        if let preference { return "tokenized \(preference.kind.noun) (meshlm data pref-tokenize)" }
        return "token shards (meshlm data tokenize)"
    }

    enum CodingKeys: String, CodingKey {
        case format
        case formatVersion = "format_version"
        case tokenizer
        case vocabSize = "vocab_size"
        case eosId = "eos_id"
        case dtype
        case chunkTokens = "chunk_tokens"
        case deflateLevel = "deflate_level"
        case shards
        case totalTokens = "total_tokens"
        case totalDocuments = "total_documents"
        case inputs
        case sft
        case preference
    }

    /// The manifest as written: pretty-printed with sorted keys, so equal manifests are equal bytes.
    public func encoded() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Encoding plain structs of strings and integers cannot fail.
        guard var data = try? encoder.encode(self) else { preconditionFailure("manifest encoding failed") }
        data.append(UInt8(ascii: "\n"))
        return data
    }

    /// Reads and checks `DIRECTORY/manifest.json`: format, version, and totals that add up.
    public static func read(directory: String) throws(DataError) -> ShardManifest {
        let path = (directory as NSString).appendingPathComponent(fileName)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DataError("\(directory): no such directory")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError("\(directory): no \(fileName), so not a token shard directory (a directory without its manifest is incomplete: the writer did not finish)")
        }
        return try decode(data, path: path)
    }

    /// Decodes and checks the bytes of a manifest.json; `path` names it in errors.
    public static func decode(_ data: Data, path: String) throws(DataError) -> ShardManifest {
        let manifest: ShardManifest
        do {
            manifest = try JSONDecoder().decode(ShardManifest.self, from: data)
        } catch let error as DecodingError {
            throw DataError("\(path): \(describe(error))")
        } catch {
            throw DataError("\(path): \(error)")
        }
        guard [formatName, sftFormatName, preferenceFormatName].contains(manifest.format) else {
            throw DataError("\(path): format '\(manifest.format)' is not '\(formatName)', '\(sftFormatName)' or '\(preferenceFormatName)'")
        }
        for (section, format, present) in [("an 'sft'", sftFormatName, manifest.sft != nil), ("a 'preference'", preferenceFormatName, manifest.preference != nil)]
        where (manifest.format == format) != present {
            throw DataError(present ? "\(path): \(section) section belongs to format '\(format)', not '\(manifest.format)'"
                                    : "\(path): format '\(manifest.format)' needs \(section) section")
        }
        guard manifest.formatVersion <= currentFormatVersion else {
            throw DataError("\(path): format version \(manifest.formatVersion) is newer than this MeshLM reads (\(currentFormatVersion))")
        }
        // Added without overflow: counts near Int.max are bad input, not a trap.
        var tokens = 0, documents = 0
        for shard in manifest.shards {
            guard shard.tokens >= 0, shard.documents >= 0 else {
                throw DataError("\(path): shard \(shard.file) records \(shard.tokens) tokens and \(shard.documents) documents (counts are never negative)")
            }
            let (sumOfTokens, tokensOverflow) = tokens.addingReportingOverflow(shard.tokens)
            let (sumOfDocuments, documentsOverflow) = documents.addingReportingOverflow(shard.documents)
            guard !tokensOverflow, !documentsOverflow else {
                throw DataError("\(path): the shards' token or document counts add up to more than \(Int.max)")
            }
            (tokens, documents) = (sumOfTokens, sumOfDocuments)
        }
        guard tokens == manifest.totalTokens, documents == manifest.totalDocuments else {
            throw DataError("\(path): shards add up to \(tokens) tokens and \(documents) documents, but total_tokens is \(manifest.totalTokens) and total_documents \(manifest.totalDocuments)")
        }
        return manifest
    }

    private static func describe(_ error: DecodingError) -> String {
        func key(_ path: [any CodingKey]) -> String {
            let joined = path.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return String(joined.drop(while: { $0 == "." }))
        }
        switch error {
        case .keyNotFound(let missing, let context):
            return "key '\(key(context.codingPath + [missing]))' is missing"
        case .typeMismatch(let type, let context), .valueNotFound(let type, let context):
            return "key '\(key(context.codingPath))' should be \(type)"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "not valid JSON" : "key '\(key(context.codingPath))': \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}
