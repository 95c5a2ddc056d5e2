import Foundation
import Runtime

/// The element type of a saved tensor; the name is stored so a reader can refuse what it does
/// not understand. `f32` is what training writes; `q8_0` and `q4_0` are the block formats of a
/// quantized checkpoint for inference (`meshlm ckpt quantize`, `QuantizedFormat`): elements
/// come in blocks of 32 along the last dimension, each block stored as its f16 scale and codes
/// (34 and 18 bytes), and slices start and end on block boundaries.
public enum CheckpointDType: String, Codable, Sendable, CaseIterable {
    case f32
    case q8_0
    case q4_0

    /// Elements per stored unit: 1, or 32 for a block format.
    public var elementsPerBlock: Int {
        switch self {
        case .f32: 1
        case .q8_0, .q4_0: 32
        }
    }

    /// Bytes of one stored unit.
    public var blockBytes: Int {
        switch self {
        case .f32: 4
        case .q8_0: 34
        case .q4_0: 18
        }
    }

    /// Bytes of `elements` elements (a whole number of blocks).
    public func byteCount(elements: Int) -> Int { elements / elementsPerBlock * blockBytes }

    public var isQuantized: Bool { self != .f32 }
}

/// `index.json`: which bytes of which file hold which elements of which tensor
/// (docs/checkpoints.md, "index.json").
public struct CheckpointIndex: Codable, Sendable, Equatable {
    /// One zstd frame: elements `[start, end)` of the flattened tensor, little-endian.
    public struct Slice: Codable, Sendable, Equatable {
        public var start: Int
        public var end: Int
        /// The shard file, relative to the step directory.
        public var file: String
        /// Byte offset and length of the compressed frame in `file`.
        public var offset: Int
        public var length: Int
        /// Uncompressed bytes: `dtype.byteCount(elements: end - start)`.
        public var bytes: Int
        /// CRC-32C of the uncompressed bytes.
        public var crc32c: UInt32

        public var elements: Range<Int> { start..<end }
    }

    public struct Tensor: Codable, Sendable, Equatable {
        public var name: String
        public var dtype: CheckpointDType
        public var shape: [Int]
        /// Sorted by `start`; never overlapping.
        public var slices: [Slice]

        public var elementCount: Int { shape.reduce(1, *) }
    }

    public static let formatName = "meshlm-checkpoint"
    public static let formatVersion = 1

    public var format: String
    public var version: Int
    public var step: Int
    /// Ranks that wrote the checkpoint (one shard file each).
    public var worldSize: Int
    /// Sorted by name.
    public var tensors: [Tensor]

    enum CodingKeys: String, CodingKey {
        case format, version, step, worldSize = "world_size", tensors
    }

    public init(step: Int, worldSize: Int, tensors: [Tensor]) {
        self.format = Self.formatName
        self.version = Self.formatVersion
        self.step = step
        self.worldSize = worldSize
        self.tensors = tensors
    }

    /// Merges every rank's tensor records (same name → slices joined), checking that the ranks
    /// agree on shapes and dtypes and that no two slices overlap.
    static func merging(_ parts: [[Tensor]], step: Int, worldSize: Int) throws(CheckpointError) -> CheckpointIndex {
        var byName: [String: Tensor] = [:]
        for part in parts {
            for tensor in part {
                guard var merged = byName[tensor.name] else { byName[tensor.name] = tensor; continue }
                guard merged.shape == tensor.shape, merged.dtype == tensor.dtype else {
                    throw CheckpointError(.badIndex, "tensor \(tensor.name) saved with shape \(merged.shape) \(merged.dtype.rawValue) by one rank and \(tensor.shape) \(tensor.dtype.rawValue) by another")
                }
                merged.slices += tensor.slices
                byName[tensor.name] = merged
            }
        }
        var tensors = byName.values.sorted { $0.name < $1.name }
        for index in tensors.indices {
            tensors[index].slices.sort { $0.start < $1.start }
            try tensors[index].checkSlices()
        }
        return CheckpointIndex(step: step, worldSize: worldSize, tensors: tensors)
    }

    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }

    /// Decodes and checks an index read from `file` (named in errors).
    public static func decode(_ data: Data, file: String) throws(CheckpointError) -> CheckpointIndex {
        let index: CheckpointIndex
        do {
            index = try JSONDecoder().decode(CheckpointIndex.self, from: data)
        } catch {
            throw CheckpointError(.badIndex, "\(file) is not a checkpoint index: \(describe(error)); the checkpoint is damaged: restore it, or use another step")
        }
        guard index.format == formatName, index.version == formatVersion else {
            throw CheckpointError(.badIndex, "\(file) holds format \(index.format) version \(index.version); this MeshLM reads \(formatName) version \(formatVersion)")
        }
        for tensor in index.tensors {
            guard tensor.shape.allSatisfy({ $0 >= 0 }), checkedElementCount(tensor.shape, times: 4) != nil,
                  !tensor.dtype.isQuantized || (tensor.shape.last ?? 0) % tensor.dtype.elementsPerBlock == 0 else {
                throw CheckpointError(.badIndex, "\(file): tensor \(tensor.name) has shape \(tensor.shape)")
            }
            do { try tensor.checkSlices() } catch { throw CheckpointError(.badIndex, "\(file): \(error.description)") }
            let block = tensor.dtype.elementsPerBlock
            for slice in tensor.slices where slice.bytes != tensor.dtype.byteCount(elements: slice.elements.count) || slice.length < 0
                || slice.offset < 0 || slice.start % block != 0 || slice.end % block != 0 {
                throw CheckpointError(.badIndex, "\(file): tensor \(tensor.name) slice \(slice.start)..<\(slice.end) in \(slice.file) records \(slice.bytes) bytes at offset \(slice.offset) length \(slice.length)")
            }
        }
        return index
    }
}

/// The product of `shape`'s sizes and `factor` (a dtype's byte count), or nil when it overflows
/// `Int`. Multiplied left to right from `factor` ≥ 1, so `shape.reduce(1, *)` cannot overflow when this does not.
func checkedElementCount(_ shape: [Int], times factor: Int = 1) -> Int? {
    var product = factor
    for size in shape {
        let (next, overflow) = product.multipliedReportingOverflow(by: size)
        guard !overflow else { return nil }
        product = next
    }
    return product
}

extension CheckpointIndex.Tensor {
    /// Slices must be sorted, inside the tensor and disjoint (two ranks writing the same elements
    /// is a caller's bug that would otherwise load either copy silently).
    func checkSlices() throws(CheckpointError) {
        var end = 0
        for slice in slices {
            guard slice.start >= 0, slice.start < slice.end, slice.end <= elementCount else {
                throw CheckpointError(.badIndex, "tensor \(name) of \(elementCount) elements has a slice \(slice.start)..<\(slice.end) (in \(slice.file))")
            }
            guard slice.start >= end else {
                throw CheckpointError(.badIndex, "tensor \(name) has overlapping slices ending at \(end) and starting at \(slice.start) (in \(slice.file))")
            }
            end = slice.end
        }
    }

    /// The first gap in `range` that no slice covers, if any.
    func firstGap(in range: Range<Int>) -> Range<Int>? {
        var next = range.lowerBound
        for slice in slices where slice.end > next && slice.start < range.upperBound {
            if slice.start > next { return next..<slice.start }
            next = slice.end
        }
        return next < range.upperBound ? next..<range.upperBound : nil
    }
}
