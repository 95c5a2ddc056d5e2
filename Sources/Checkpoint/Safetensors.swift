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
        let headerLength = try Self.headerLength(prefix: prefix, fileSize: fileSize, path: path)
        let headerData = (try? handle.read(upToCount: headerLength)) ?? Data()
        let (entries, metadata) = try Self.parseHeader(headerData, length: headerLength, fileSize: fileSize, path: path)
        dataStart = 8 + headerLength
        self.entries = entries.sorted { $0.dataOffsets.lowerBound < $1.dataOffsets.lowerBound }
        self.metadata = metadata
        self.byName = Dictionary(entries.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    deinit { try? handle.close() }

    /// Checks the bytes of a whole safetensors file as `init(path:)` checks the file's header:
    /// the fuzzer's entry (Fuzz/). Returns the tensors (in header order) and the metadata.
    public static func header(ofFile bytes: Data, path: String) throws(CheckpointError)
        -> (entries: [SafetensorsEntry], metadata: [String: String]) {
        let headerLength = try headerLength(prefix: bytes.prefix(8), fileSize: bytes.count, path: path)
        return try parseHeader(bytes.dropFirst(8).prefix(headerLength), length: headerLength, fileSize: bytes.count, path: path)
    }

    /// The header length the first 8 bytes give, checked against the file's size.
    private static func headerLength(prefix: Data, fileSize: Int, path: String) throws(CheckpointError) -> Int {
        guard prefix.count == 8 else { throw CheckpointError(.truncatedFile, "\(path) is not a safetensors file: shorter than its 8-byte header length") }
        // Unsigned on disk: a length past Int.max is refused like any other too large for the file.
        let headerLength = prefix.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard headerLength > 0, headerLength <= 100_000_000, 8 + Int(headerLength) <= fileSize else {
            throw CheckpointError(.badIndex, "\(path) is not a safetensors file: header length \(headerLength) for a file of \(fileSize) bytes")
        }
        return Int(headerLength)
    }

    /// The tensors and metadata of the JSON header (`length` bytes read after the first 8).
    private static func parseHeader(_ headerData: Data, length: Int, fileSize: Int, path: String) throws(CheckpointError)
        -> (entries: [SafetensorsEntry], metadata: [String: String]) {
        guard headerData.count == length,
              let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
            throw CheckpointError(.badIndex, "\(path): the safetensors header is not a JSON object")
        }
        let dataStart = 8 + length
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
            // Sizes are checked without overflow: a shape or offset near Int.max is bad input.
            guard shape.allSatisfy({ $0 >= 0 }), offsets[0] >= 0, offsets[1] >= offsets[0],
                  let byteCount = checkedElementCount(shape, times: dtype.byteCount), offsets[1] - offsets[0] == byteCount else {
                throw CheckpointError(.badIndex, "\(path): tensor \(name) of shape \(shape) \(dtypeName) has data_offsets \(offsets)")
            }
            let entry = SafetensorsEntry(name: name, dtype: dtype, shape: shape, dataOffsets: offsets[0]..<offsets[1])
            guard offsets[1] <= fileSize - dataStart else {
                throw CheckpointError(.truncatedFile, "\(path) is truncated: tensor \(name) needs data bytes up to \(offsets[1]) after the \(dataStart)-byte header, the file has \(fileSize) bytes")
            }
            entries.append(entry)
        }
        return (entries, metadata)
    }

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
