import Foundation

/// A checkpoint's tensors, whole, wherever they are: a QLoRA run's checkpoint holds no quantized
/// tensor (its `metadata.json` names `quantized_base` and the `base_checkpoint` they come from),
/// so those are read from the base and handed to the caller's transform — dequant(NF4(W)), what
/// the run computed with (`QLoRAMergeBase.dequantized`: `eval`, `merge-lora`'s default, serving),
/// or W itself (`.original`: `export-hf`, whose users quantize the base themselves). Any other
/// checkpoint's tensors are its own.
public struct CheckpointTensors {
    public let reader: CheckpointReader
    /// The base checkpoint of a QLoRA run's checkpoint, nil for any other.
    public let quantizedBase: CheckpointReader?
    private let saved: Set<String>

    public init(_ reader: CheckpointReader) throws {
        struct State: Decodable {
            var quantizedBase: String?
            var baseCheckpoint: String?
            enum CodingKeys: String, CodingKey { case quantizedBase = "quantized_base", baseCheckpoint = "base_checkpoint" }
        }
        self.reader = reader
        saved = Set(reader.tensorNames)
        guard let state = try? JSONDecoder().decode(State.self, from: reader.metadata), let format = state.quantizedBase,
              let base = state.baseCheckpoint else {
            quantizedBase = nil
            return
        }
        guard format == "nf4" else {
            throw CheckpointError(.badIndex, "\(reader.stepDirectory): quantized_base \(format) is not a format this MeshLM knows (nf4)")
        }
        do {
            quantizedBase = try CheckpointReader(stepDirectory: base)
        } catch {
            throw CheckpointError(.missingFile, "\(reader.stepDirectory) is a QLoRA run's checkpoint, whose quantized tensors come from its base_checkpoint \(base), which cannot be read: \(error)")
        }
    }

    /// The reader that holds `name`.
    func source(_ name: String) -> CheckpointReader {
        saved.contains(name) ? reader : quantizedBase ?? reader
    }

    /// Whether `name` comes from the base (a QLoRA run's quantized tensor).
    public func fromBase(_ name: String) -> Bool { quantizedBase != nil && !saved.contains(name) }

    public func shape(of name: String) throws -> [Int] { try source(name).shape(of: name) }

    /// Tensor `name` ([rows, …]) whole; one from the base passed through `base(values, rows,
    /// columns)`.
    public func read(_ name: String, base: ([Float], Int, Int) -> [Float]) throws -> [Float] {
        let values = try source(name).read(name: name)
        guard fromBase(name) else { return values }
        let shape = try source(name).shape(of: name)
        return base(values, shape[0], shape.dropFirst().reduce(1, *))
    }
}
