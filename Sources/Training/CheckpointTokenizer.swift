import DataPipeline
import Foundation
import Runtime

/// The tokenizer a checkpoint's ids belong to, and the checks every place where ids meet a
/// tokenizer or a model makes with it (docs/checkpoints.md, "Tokenizer identity"): equal
/// identities (by hash) or a clear error naming both — never ids of one vocabulary read with
/// another.
public enum CheckpointTokenizer {
    /// What `stepDirectory` records: `tokenizer_identity.json`, else the identity of its
    /// `tokenizer.json`; nil when it records neither (checkpoints made before identities were
    /// saved, or by tools that keep no tokenizer).
    public static func recorded(in stepDirectory: String) throws -> TokenizerIdentity? {
        let identityPath = stepDirectory + "/" + CheckpointExtras.tokenizerIdentityName
        if let data = FileManager.default.contents(atPath: identityPath) {
            do {
                return try JSONDecoder().decode(TokenizerIdentity.self, from: data)
            } catch {
                throw JobError("\(identityPath): not a tokenizer identity (\(Runtime.describe(error))); the checkpoint is damaged — restore the file or use another checkpoint")
            }
        }
        let file = stepDirectory + "/" + CheckpointExtras.tokenizerName
        guard FileManager.default.fileExists(atPath: file) else { return nil }
        return try TokenizerLoader.load(file).identity
    }

    /// The tokenizer to read and write `stepDirectory`'s ids with: `given` (a tokenizer.json or a
    /// name), checked against what the checkpoint records; else the checkpoint's own
    /// tokenizer.json; else the byte tokenizer when that is what it records (or it records none).
    /// A checkpoint recording a BPE tokenizer it does not hold needs `given`.
    public static func load(for stepDirectory: String, given: String?) throws -> any Tokenizer {
        let recorded = try recorded(in: stepDirectory)
        if let given {
            let tokenizer = try TokenizerLoader.load(given)
            try check(tokenizer.identity, source: "--tokenizer \(given)", against: recorded, checkpoint: stepDirectory,
                      remedy: "give the tokenizer the model was trained with, or leave --tokenizer out to use the checkpoint's own")
            return tokenizer
        }
        let file = stepDirectory + "/" + CheckpointExtras.tokenizerName
        if FileManager.default.fileExists(atPath: file) {
            let tokenizer = try TokenizerLoader.load(file)
            try check(tokenizer.identity, source: file, against: recorded, checkpoint: stepDirectory,
                      remedy: "the checkpoint's files disagree: restore its tokenizer.json, or give the right one with --tokenizer")
            return tokenizer
        }
        let bytes = ByteTokenizer()
        if let recorded, recorded.hash != bytes.identity.hash {
            throw JobError("\(stepDirectory) was trained with tokenizer \(summary(recorded)) but holds no tokenizer.json: give that tokenizer with --tokenizer PATH (pretraining copies the data's tokenizer.json into its checkpoints; `meshlm data tokenize` writes it beside the shards)")
        }
        return bytes
    }

    /// Throws unless `used` is the tokenizer `recorded` (nothing recorded passes), naming both,
    /// where `used` came from (`source`) and what to do (`remedy`).
    public static func check(_ used: TokenizerIdentity, source: String, against recorded: TokenizerIdentity?, checkpoint: String,
                             remedy: String) throws {
        guard let recorded, recorded.hash != used.hash else { return }
        throw JobError("\(source) is tokenizer \(summary(used)), but \(checkpoint) was trained with tokenizer \(summary(recorded)): their ids mean other text; \(remedy)")
    }

    /// Throws unless the token data at `dataPath` (its manifest's tokenizer) is the tokenizer the
    /// checkpoint records; data without a manifest (a .bin or .npy) passes.
    public static func checkData(_ data: TokenizerIdentity?, dataPath: String, checkpoint: String) throws {
        guard let data else { return }
        try check(data, source: "\(dataPath) (tokenized with it)", against: try recorded(in: checkpoint), checkpoint: checkpoint,
                  remedy: "tokenize the data with the checkpoint's tokenizer (meshlm data tokenize --tokenizer STEP_DIR/tokenizer.json)")
    }

    /// `name (sha256:1234abcd…, V ids)`: how messages name a tokenizer.
    public static func summary(_ identity: TokenizerIdentity) -> String {
        let hash = identity.hash.hasPrefix("sha256:") ? String(identity.hash.prefix(7 + 12)) + "…" : identity.hash
        return "\(identity.name) (\(hash), \(identity.vocabSize) ids)"
    }
}
