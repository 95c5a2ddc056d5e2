import Foundation
import Runtime

/// The element type of a headerless `.bin` token file (or of a `.npy` array). A config choice
/// (`data.bin_dtype`): a bad value lists these.
public enum RawTokenType: String, ConfigChoice {
    case uint16, uint32, int32, int64

    public var byteWidth: Int {
        switch self {
        case .uint16: 2
        case .uint32, .int32: 4
        case .int64: 8
        }
    }

    /// The NumPy `descr` of this type (little-endian).
    public var numpyDescr: String {
        switch self {
        case .uint16: "<u2"
        case .uint32: "<u4"
        case .int32: "<i4"
        case .int64: "<i8"
        }
    }
}

/// A flat file of little-endian token ids: a headerless `.bin`, or the data of a `.npy` after
/// its header. Read with `pread`, so only the requested tokens are in memory.
final class RawTokenFile: TokenStore {
    let path: String
    let type: RawTokenType
    let dataOffset: Int
    let tokenCount: Int
    private let descriptor: Int32

    /// A `.bin` file: `type` ids from the first byte to the last.
    static func bin(_ path: String, type: RawTokenType) throws(DataError) -> RawTokenFile {
        let size = try fileSize(path)
        guard size % type.byteWidth == 0 else {
            throw DataError("\(path): \(size) bytes is not a whole number of \(type.rawValue) tokens (\(type.byteWidth) bytes each); is the dtype right?")
        }
        return try RawTokenFile(path: path, type: type, dataOffset: 0, tokenCount: size / type.byteWidth)
    }

    /// A `.npy` file: a 1-D, C-order array of '<u2', '<u4', '<i4' or '<i8' (NPY format 1.0–3.0).
    static func npy(_ path: String) throws(DataError) -> RawTokenFile {
        let size = try fileSize(path)
        guard let handle = FileHandle(forReadingAtPath: path) else { throw DataError("\(path): cannot be opened") }
        defer { try? handle.close() }
        let prefix = (try? handle.read(upToCount: 12)) ?? Data()
        let header = try NPYHeader(path: path, prefix: [UInt8](prefix)) { (count) throws(DataError) in
            guard let data = try? handle.read(upToCount: count), data.count == count else {
                throw DataError("\(path): .npy header is truncated")
            }
            return [UInt8](data)
        }
        let needed = header.count * header.type.byteWidth
        guard size - header.dataOffset == needed else {
            throw DataError("\(path): .npy header says \(header.count) tokens of '\(header.type.numpyDescr)' (\(needed) bytes), but \(size - header.dataOffset) bytes follow it")
        }
        return try RawTokenFile(path: path, type: header.type, dataOffset: header.dataOffset, tokenCount: header.count)
    }

    private init(path: String, type: RawTokenType, dataOffset: Int, tokenCount: Int) throws(DataError) {
        self.path = path
        self.type = type
        self.dataOffset = dataOffset
        self.tokenCount = tokenCount
        descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else { throw DataError("\(path): cannot be opened: \(String(cString: strerror(errno)))") }
    }

    deinit { close(descriptor) }

    private static func fileSize(_ path: String) throws(DataError) -> Int {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw DataError("\(path): no such file")
        }
        guard let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber else {
            throw DataError("\(path): cannot be read")
        }
        return size.intValue
    }

    func read(_ range: Range<Int>, into destination: UnsafeMutablePointer<Int32>) throws(DataError) {
        guard !range.isEmpty else { return }
        let byteCount = range.count * type.byteWidth
        let bytes = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 8)
        defer { bytes.deallocate() }
        var done = 0
        while done < byteCount {
            let count = pread(descriptor, bytes + done, byteCount - done, off_t(dataOffset + range.lowerBound * type.byteWidth + done))
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                throw DataError("\(path): read of tokens \(range.lowerBound)..<\(range.upperBound) failed: \(count < 0 ? String(cString: strerror(errno)) : "the file is shorter than before")")
            }
            done += count
        }
        // Little-endian files on a little-endian host: the loads below are plain copies.
        for index in 0..<range.count {
            let value: Int64
            switch type {
            case .uint16: value = Int64(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2 * index, as: UInt16.self)))
            case .uint32: value = Int64(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4 * index, as: UInt32.self)))
            case .int32: value = Int64(Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4 * index, as: Int32.self)))
            case .int64: value = Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8 * index, as: Int64.self))
            }
            guard value >= 0, value <= Int64(Int32.max) else {
                throw DataError("\(path): token \(range.lowerBound + index) is \(value), not a token id (ids are 0...\(Int32.max))")
            }
            destination[index] = Int32(value)
        }
    }
}
