import Foundation
import Runtime

/// The element types MeshLM reads from and writes to safetensors files (Hugging Face's names).
public enum SafetensorsDType: String, Sendable, CaseIterable {
    case f32 = "F32", bf16 = "BF16", f16 = "F16"

    public var byteCount: Int { self == .f32 ? 4 : 2 }

    /// `values` as little-endian bytes of this type (bf16 rounds to nearest even; f16 by the
    /// hardware conversion).
    public func encode(_ values: UnsafeBufferPointer<Float>) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: values.count * byteCount)
        bytes.withUnsafeMutableBytes { raw in
            switch self {
            case .f32:
                for (index, value) in values.enumerated() { raw.storeBytes(of: value.bitPattern.littleEndian, toByteOffset: 4 * index, as: UInt32.self) }
            case .bf16:
                for (index, value) in values.enumerated() {
                    let bits = value.bitPattern
                    // NaN keeps a quiet NaN; everything else rounds to nearest, ties to even.
                    let rounded = value.isNaN ? (bits >> 16) | 0x40 : (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16
                    raw.storeBytes(of: UInt16(truncatingIfNeeded: rounded).littleEndian, toByteOffset: 2 * index, as: UInt16.self)
                }
            case .f16:
                for (index, value) in values.enumerated() {
                    raw.storeBytes(of: Float16(value).bitPattern.littleEndian, toByteOffset: 2 * index, as: UInt16.self)
                }
            }
        }
        return bytes
    }

    /// Little-endian bytes of this type converted to f32 (exact for all three types).
    public func decode(_ raw: UnsafeRawBufferPointer, into output: UnsafeMutableBufferPointer<Float>) {
        precondition(raw.count == output.count * byteCount, "\(raw.count) bytes for \(output.count) \(rawValue) values")
        for index in 0..<output.count {
            switch self {
            case .f32: output[index] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * index, as: UInt32.self)))
            case .bf16: output[index] = Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * index, as: UInt16.self))) << 16)
            case .f16: output[index] = Float(Float16(bitPattern: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * index, as: UInt16.self))))
            }
        }
    }
}

/// One tensor of a safetensors file: its header entry.
public struct SafetensorsEntry: Sendable, Equatable {
    public var name: String
    public var dtype: SafetensorsDType
    public var shape: [Int]
    /// Byte range inside the data section (after the header).
    public var dataOffsets: Range<Int>

    public var elementCount: Int { shape.reduce(1, *) }
}

/// Writes and reads the safetensors format: an 8-byte little-endian header length, a JSON header
/// `{name: {dtype, shape, data_offsets}, "__metadata__": {…}}` padded with spaces to a multiple
/// of 8 bytes, then the tensors' bytes back to back.
public enum Safetensors {
    /// A tensor to write: its bytes come from `values` (f32) converted to `dtype`.
    public struct Output {
        public var name: String
        public var shape: [Int]
        public var dtype: SafetensorsDType
        public var values: () throws -> [Float]

        public init(name: String, shape: [Int], dtype: SafetensorsDType, values: @escaping () throws -> [Float]) {
            self.name = name
            self.shape = shape
            self.dtype = dtype
            self.values = values
        }
    }

    /// Writes `tensors` (in this order) to `path` by way of a temporary file renamed at the end;
    /// each tensor's values are produced one at a time, so memory holds one tensor.
    public static func write(_ tensors: [Output], metadata: [String: String], to path: String) throws {
        var header: [String: Any] = [:]
        var offset = 0
        for tensor in tensors {
            let bytes = tensor.shape.reduce(1, *) * tensor.dtype.byteCount
            header[tensor.name] = ["dtype": tensor.dtype.rawValue, "shape": tensor.shape, "data_offsets": [offset, offset + bytes]] as [String: Any]
            offset += bytes
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Data starts 8-byte aligned, so a reader may map f32/f16 values in place.
        json.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8))
        let temporary = path + ".tmp"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw CheckpointFiles.ioError("create", temporary) }
        var closed = false
        defer { if !closed { close(descriptor); unlink(temporary) } }
        var length = UInt64(json.count).littleEndian
        try CheckpointFiles.writeAll(descriptor, Data(bytes: &length, count: 8), path: temporary)
        try CheckpointFiles.writeAll(descriptor, json, path: temporary)
        for tensor in tensors {
            let values = try tensor.values()
            guard values.count == tensor.shape.reduce(1, *) else {
                throw CheckpointError(.badIndex, "tensor \(tensor.name) of shape \(tensor.shape) came with \(values.count) values (writing \(path))")
            }
            let bytes = values.withUnsafeBufferPointer { tensor.dtype.encode($0) }
            try CheckpointFiles.writeAll(descriptor, bytes, path: temporary)
        }
        guard fsync(descriptor) == 0 else { throw CheckpointFiles.ioError("fsync", temporary) }
        close(descriptor)
        closed = true
        guard rename(temporary, path) == 0 else {
            unlink(temporary)
            throw CheckpointFiles.ioError("rename \(temporary) to", path)
        }
    }
}

/// A safetensors file opened for reading: the header parsed and checked, tensors read on demand.
public final class SafetensorsFile: @unchecked Sendable {
    public let path: String
    public let entries: [SafetensorsEntry]
    public let metadata: [String: String]
    private let dataStart: Int
    private let handle: FileHandle
    private let byName: [String: SafetensorsEntry]

    public init(path: String) throws(CheckpointError) {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw CheckpointError(.missingFile, "cannot open safetensors file \(path)")
        }
        self.path = path
        self.handle = handle
        let fileSize: Int
        do { fileSize = Int(try handle.seekToEnd()); try handle.seek(toOffset: 0) } catch {
            throw CheckpointError(.io, "cannot read \(path): \(FileProblem.reason(error, path: path))")
        }
        let prefix = (try? handle.read(upToCount: 8)) ?? Data()
        guard prefix.count == 8 else { throw CheckpointError(.truncatedFile, "\(path) is not a safetensors file: shorter than its 8-byte header length") }
        let headerLength = prefix.withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        guard headerLength > 0, headerLength <= 100_000_000, 8 + headerLength <= fileSize else {
            throw CheckpointError(.badIndex, "\(path) is not a safetensors file: header length \(headerLength) for a file of \(fileSize) bytes")
        }
        let headerData = (try? handle.read(upToCount: headerLength)) ?? Data()
        guard headerData.count == headerLength,
              let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
            throw CheckpointError(.badIndex, "\(path): the safetensors header is not a JSON object")
        }
        dataStart = 8 + headerLength
        var entries: [SafetensorsEntry] = []
        var metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                metadata = (value as? [String: String]) ?? [:]
                continue
            }
            guard let fields = value as? [String: Any], let dtypeName = fields["dtype"] as? String,
                  let shape = fields["shape"] as? [Int], let offsets = fields["data_offsets"] as? [Int], offsets.count == 2 else {
                throw CheckpointError(.badIndex, "\(path): tensor \(name) has no dtype, shape and data_offsets in the header")
            }
            guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
                throw CheckpointError(.badIndex, "\(path): tensor \(name) has dtype \(dtypeName); MeshLM reads \(SafetensorsDType.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            let entry = SafetensorsEntry(name: name, dtype: dtype, shape: shape, dataOffsets: offsets[0]..<max(offsets[0], offsets[1]))
            guard shape.allSatisfy({ $0 >= 0 }), offsets[0] >= 0, offsets[1] - offsets[0] == entry.elementCount * dtype.byteCount else {
                throw CheckpointError(.badIndex, "\(path): tensor \(name) of shape \(shape) \(dtypeName) has data_offsets \(offsets)")
            }
            guard dataStart + offsets[1] <= fileSize else {
                throw CheckpointError(.truncatedFile, "\(path) is truncated: tensor \(name) needs bytes up to \(dataStart + offsets[1]), the file has \(fileSize)")
            }
            entries.append(entry)
        }
        self.entries = entries.sorted { $0.dataOffsets.lowerBound < $1.dataOffsets.lowerBound }
        self.metadata = metadata
        self.byName = Dictionary(entries.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    deinit { try? handle.close() }

    public func entry(named name: String) throws(CheckpointError) -> SafetensorsEntry {
        guard let entry = byName[name] else { throw CheckpointError(.unknownTensor, "\(path) has no tensor \(name)") }
        return entry
    }

    /// The raw little-endian bytes of a tensor, as stored.
    public func bytes(of name: String) throws(CheckpointError) -> Data {
        let entry = try entry(named: name)
        do {
            try handle.seek(toOffset: UInt64(dataStart + entry.dataOffsets.lowerBound))
            let data = try handle.read(upToCount: entry.dataOffsets.count) ?? Data()
            guard data.count == entry.dataOffsets.count else {
                throw CheckpointError(.truncatedFile, "\(path) is truncated inside tensor \(name)")
            }
            return data
        } catch let error as CheckpointError {
            throw error
        } catch {
            throw CheckpointError(.io, "cannot read tensor \(name) from \(path): \(FileProblem.reason(error, path: path))")
        }
    }

    /// A tensor converted to f32, flattened.
    public func floats(of name: String) throws(CheckpointError) -> [Float] {
        let entry = try entry(named: name)
        let data = try bytes(of: name)
        var values = [Float](repeating: 0, count: entry.elementCount)
        data.withUnsafeBytes { raw in values.withUnsafeMutableBufferPointer { entry.dtype.decode(raw, into: $0) } }
        return values
    }
}
