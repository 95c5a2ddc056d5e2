import CHDF5
import Foundation

/// A failed HDF5 call, named, with the innermost message of HDF5's error stack.
public struct HDF5Error: Error, CustomStringConvertible, Sendable {
    /// The HDF5 function that failed, e.g. `H5Dread`.
    public let call: String
    /// The file involved.
    public let path: String
    public let reason: String
    public var description: String { "\(path): \(call) failed: \(reason)" }

    /// What is wrong with a file being read, in a user's words rather than HDF5's: "not an HDF5
    /// file", "truncated: 3000 of its 268104 bytes are there", else that it is damaged, with
    /// HDF5's innermost message as the detail.
    public var readProblem: String {
        if reason == "no such file" { return reason }
        if reason.hasPrefix("file signature not found") { return "not an HDF5 file" }
        if reason.hasPrefix("truncated file") {
            func number(after label: String) -> String? {
                guard let range = reason.range(of: label + " = ") else { return nil }
                return String(reason[range.upperBound...].prefix { $0.isNumber })
            }
            if let present = number(after: "eof"), let stored = number(after: "stored_eof") {
                return "truncated: \(present) of its \(stored) bytes are there"
            }
            return "truncated"
        }
        return "damaged (HDF5 could not read it: \(reason))"
    }
}

/// Runs one HDF5 call and turns a negative return into an `HDF5Error` naming the call.
/// HDF5's own printing of error stacks is turned off once (`HDF5File` init), so a failure is
/// reported once, here.
@inline(__always)
@discardableResult
func checkHDF5<T: BinaryInteger>(_ call: StaticString, path: String, _ result: T) throws(HDF5Error) -> T {
    if result < 0 {
        throw HDF5Error(call: "\(call)", path: path, reason: hdf5StackMessage())
    }
    return result
}

/// The most specific description on HDF5's current error stack.
private func hdf5StackMessage() -> String {
    final class Box { var messages: [String] = [] }
    let box = Box()
    let walker: H5E_walk2_t = { _, error, data in
        guard let error, let data else { return 0 }
        let box = Unmanaged<Box>.fromOpaque(data).takeUnretainedValue()
        if let description = error.pointee.desc { box.messages.append(String(cString: description)) }
        return 0
    }
    _ = H5Ewalk2(hid_t(H5E_DEFAULT), H5E_WALK_UPWARD, walker, Unmanaged.passUnretained(box).toOpaque())
    _ = H5Eclear2(hid_t(H5E_DEFAULT))
    let useful = box.messages.filter { !$0.isEmpty }
    return useful.first ?? "unknown HDF5 error"
}

/// A scalar stored in HDF5 datasets.
public protocol HDF5Scalar: Numeric, Sendable {
    static var hdf5Type: hid_t { get }
}
extension Float: HDF5Scalar { public static var hdf5Type: hid_t { meshlm_h5t_native_float() } }
extension Double: HDF5Scalar { public static var hdf5Type: hid_t { meshlm_h5t_native_double() } }
extension UInt8: HDF5Scalar { public static var hdf5Type: hid_t { meshlm_h5t_native_uint8() } }
extension UInt16: HDF5Scalar { public static var hdf5Type: hid_t { meshlm_h5t_native_uint16() } }
extension Int32: HDF5Scalar { public static var hdf5Type: hid_t { meshlm_h5t_native_int32() } }
extension UInt32: HDF5Scalar { public static var hdf5Type: hid_t { meshlm_h5t_native_uint32() } }
extension Int64: HDF5Scalar { public static var hdf5Type: hid_t { meshlm_h5t_native_int64() } }
extension UInt64: HDF5Scalar { public static var hdf5Type: hid_t { meshlm_h5t_native_uint64() } }

/// An open HDF5 file with the few operations MeshLM needs: whole and partial (hyperslab) reads
/// and writes of n-dimensional datasets, with optional chunking and deflate.
public final class HDF5File {
    public let path: String
    private let handle: hid_t

    /// Creates (or truncates) a file.
    ///
    /// The corresponding C function is `H5Fcreate`.
    public static func create(_ path: String) throws(HDF5Error) -> HDF5File {
        _ = meshlm_h5_silence_errors()
        let handle = try checkHDF5("H5Fcreate", path: path,
                                   H5Fcreate(path, meshlm_h5f_acc_trunc(), meshlm_h5p_default(), meshlm_h5p_default()))
        return HDF5File(path: path, handle: handle)
    }

    /// Opens an existing file. A missing or non-HDF5 file is an error naming it.
    ///
    /// The corresponding C function is `H5Fopen`.
    public static func open(_ path: String, writable: Bool = false) throws(HDF5Error) -> HDF5File {
        _ = meshlm_h5_silence_errors()
        guard FileManager.default.fileExists(atPath: path) else {
            throw HDF5Error(call: "H5Fopen", path: path, reason: "no such file")
        }
        try checkBaseAddress(path)
        let flags = writable ? meshlm_h5f_acc_rdwr() : meshlm_h5f_acc_rdonly()
        let handle = try checkHDF5("H5Fopen", path: path, H5Fopen(path, flags, meshlm_h5p_default()))
        return HDF5File(path: path, handle: handle)
    }

    /// Refuses a file whose superblock (at offset 0) places the file's addresses at a base other
    /// than 0 — a user block, which MeshLM never writes, or a damaged superblock. libhdf5 1.10.8
    /// follows such a base into a damaged local heap and dereferences null (found by the
    /// `hdf5-metadata` fuzz harness, docs/fuzzing.md); this checks the bytes before it looks.
    private static func checkBaseAddress(_ path: String) throws(HDF5Error) {
        guard let file = FileHandle(forReadingAtPath: path) else { return }  // H5Fopen says why
        defer { try? file.close() }
        guard let bytes = try? file.read(upToCount: 36), bytes.count == 36,
              bytes.prefix(8).elementsEqual([0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]) else { return }
        // Superblock versions 0 and 1: offsets' size at byte 13, the base address at 24 (28 in
        // version 1, after the indexed-storage K); versions 2 and 3: the size at 9, the base at 12.
        let version = bytes[8]
        let (sizeAt, baseAt) = version == 0 ? (13, 24) : version == 1 ? (13, 28) : (9, 12)
        guard bytes[sizeAt] == 8 else { return }  // other widths: libhdf5's own checks
        let base = (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[baseAt + $1]) << (8 * UInt64($1)) }
        guard base == 0 else {
            throw HDF5Error(call: "H5Fopen", path: path,
                            reason: "its superblock's base address is \(base), not 0 (a user block or a damaged superblock; MeshLM reads HDF5 files without a user block)")
        }
    }

    private init(path: String, handle: hid_t) {
        self.path = path
        self.handle = handle
    }

    deinit { H5Fclose(handle) }

    /// Writes all of `values` as a new dataset of the given shape. `chunkElements` > 0 stores it
    /// in chunks of that many elements along the first axis (needed for compression);
    /// `deflateLevel` 1...9 compresses those chunks.
    ///
    /// The corresponding C functions are `H5Screate_simple`, `H5Dcreate2` and `H5Dwrite`.
    public func write<T: HDF5Scalar>(_ values: UnsafeBufferPointer<T>, dataset name: String, shape: [Int],
                                     chunkRows: Int = 0, deflateLevel: Int = 0) throws(HDF5Error) {
        precondition(shape.reduce(1, *) == values.count, "shape does not match the element count")
        let dims = shape.map { hsize_t($0) }
        let space = try checkHDF5("H5Screate_simple", path: path, H5Screate_simple(Int32(dims.count), dims, nil))
        defer { H5Sclose(space) }
        let properties = try checkHDF5("H5Pcreate", path: path, H5Pcreate(meshlm_h5p_dataset_create()))
        defer { H5Pclose(properties) }
        // No modification times in the object headers: the same data gives the same file bytes.
        try checkHDF5("H5Pset_obj_track_times", path: path, H5Pset_obj_track_times(properties, false))
        if chunkRows > 0, let firstDimension = shape.first, firstDimension > 0 {
            var chunk = dims
            chunk[0] = hsize_t(min(chunkRows, firstDimension))
            try checkHDF5("H5Pset_chunk", path: path, H5Pset_chunk(properties, Int32(chunk.count), chunk))
            if deflateLevel > 0 {
                try checkHDF5("H5Pset_deflate", path: path, H5Pset_deflate(properties, UInt32(deflateLevel)))
            }
        }
        let dataset = try checkHDF5("H5Dcreate2", path: path,
                                    H5Dcreate2(handle, name, T.hdf5Type, space, meshlm_h5p_default(), properties, meshlm_h5p_default()))
        defer { H5Dclose(dataset) }
        try checkHDF5("H5Dwrite", path: path,
                      H5Dwrite(dataset, T.hdf5Type, meshlm_h5s_all(), meshlm_h5s_all(), meshlm_h5p_default(), values.baseAddress))
    }

    /// Array form of `write`; a 1-D dataset unless `shape` is given.
    public func write<T: HDF5Scalar>(_ values: [T], dataset name: String, shape: [Int]? = nil,
                                     chunkRows: Int = 0, deflateLevel: Int = 0) throws(HDF5Error) {
        try values.withUnsafeBufferPointer { (buffer) throws(HDF5Error) in
            try write(buffer, dataset: name, shape: shape ?? [values.count], chunkRows: chunkRows, deflateLevel: deflateLevel)
        }
    }

    /// Whether the file holds a dataset (or group) at `name`.
    public func contains(_ name: String) -> Bool {
        H5Lexists(handle, name, meshlm_h5p_default()) > 0
    }

    /// The shape of a dataset.
    ///
    /// The corresponding C functions are `H5Dopen2`, `H5Dget_space` and
    /// `H5Sget_simple_extent_dims`.
    public func shape(of name: String) throws(HDF5Error) -> [Int] {
        let dataset = try openDataset(name)
        defer { H5Dclose(dataset) }
        let space = try checkHDF5("H5Dget_space", path: path, H5Dget_space(dataset))
        defer { H5Sclose(space) }
        let rank = try checkHDF5("H5Sget_simple_extent_ndims", path: path, H5Sget_simple_extent_ndims(space))
        var dims = [hsize_t](repeating: 0, count: Int(rank))
        try checkHDF5("H5Sget_simple_extent_dims", path: path, H5Sget_simple_extent_dims(space, &dims, nil))
        // A damaged file may claim a size past Int.max (the sizes are unsigned 64-bit).
        guard dims.allSatisfy({ $0 <= hsize_t(Int.max) }) else {
            throw HDF5Error(call: "H5Sget_simple_extent_dims", path: path,
                            reason: "dataset '\(name)' has a size past \(Int.max): \(dims.map(String.init).joined(separator: "×"))")
        }
        return dims.map { Int($0) }
    }

    /// Reads a whole dataset, converting to `T` (HDF5 converts between integer widths and floats).
    ///
    /// The corresponding C function is `H5Dread`.
    public func read<T: HDF5Scalar>(_ type: T.Type = T.self, dataset name: String) throws(HDF5Error) -> [T] {
        let count = try shape(of: name).reduce(1, *)
        return try read(type, dataset: name, rows: 0..<(try shape(of: name).first ?? 1), count: count)
    }

    /// Reads rows `rows` along the first axis (a hyperslab), all of the other axes.
    ///
    /// The corresponding C functions are `H5Sselect_hyperslab` and `H5Dread`.
    public func read<T: HDF5Scalar>(_ type: T.Type = T.self, dataset name: String, rows: Range<Int>) throws(HDF5Error) -> [T] {
        let shape = try shape(of: name)
        let rowElements = shape.dropFirst().reduce(1, *)
        return try read(type, dataset: name, rows: rows, count: rows.count * rowElements)
    }

    private func read<T: HDF5Scalar>(_ type: T.Type, dataset name: String, rows: Range<Int>, count: Int) throws(HDF5Error) -> [T] {
        let dataset = try openDataset(name)
        defer { H5Dclose(dataset) }
        let fileSpace = try checkHDF5("H5Dget_space", path: path, H5Dget_space(dataset))
        defer { H5Sclose(fileSpace) }
        let rank = Int(try checkHDF5("H5Sget_simple_extent_ndims", path: path, H5Sget_simple_extent_ndims(fileSpace)))
        var dims = [hsize_t](repeating: 0, count: rank)
        try checkHDF5("H5Sget_simple_extent_dims", path: path, H5Sget_simple_extent_dims(fileSpace, &dims, nil))
        if rank > 0 {
            guard rows.lowerBound >= 0, rows.upperBound <= Int(dims[0]) else {
                throw HDF5Error(call: "H5Sselect_hyperslab", path: path,
                                reason: "rows \(rows.lowerBound)..<\(rows.upperBound) outside dataset '\(name)' of \(dims[0]) rows")
            }
            var start = [hsize_t](repeating: 0, count: rank)
            start[0] = hsize_t(rows.lowerBound)
            var extent = dims
            extent[0] = hsize_t(rows.count)
            try checkHDF5("H5Sselect_hyperslab", path: path,
                          H5Sselect_hyperslab(fileSpace, H5S_SELECT_SET, start, nil, extent, nil))
            dims = extent
        }
        let memorySpace = try checkHDF5("H5Screate_simple", path: path, H5Screate_simple(Int32(rank), dims, nil))
        defer { H5Sclose(memorySpace) }
        var values = [T](repeating: 0, count: count)
        guard count > 0 else { return values }
        try checkStoredSize(dataset, space: fileSpace, name: name)
        try values.withUnsafeMutableBufferPointer { (buffer) throws(HDF5Error) in
            try checkHDF5("H5Dread", path: path,
                          H5Dread(dataset, T.hdf5Type, memorySpace, fileSpace, meshlm_h5p_default(), buffer.baseAddress))
        }
        return values
    }

    /// libhdf5 1.10 copies past its own buffer when a compact or contiguous dataset stores fewer
    /// bytes than its elements need (a damaged file, found by fuzzing: docs/fuzzing.md), so such
    /// a dataset is refused before `H5Dread`. Chunked datasets may store less (compression).
    ///
    /// The corresponding C functions are `H5Pget_layout`, `H5Tget_size` and `H5Dget_storage_size`.
    private func checkStoredSize(_ dataset: hid_t, space: hid_t, name: String) throws(HDF5Error) {
        let properties = try checkHDF5("H5Dget_create_plist", path: path, H5Dget_create_plist(dataset))
        defer { H5Pclose(properties) }
        let layout = H5Pget_layout(properties)
        guard layout == H5D_COMPACT || layout == H5D_CONTIGUOUS else { return }
        let type = try checkHDF5("H5Dget_type", path: path, H5Dget_type(dataset))
        defer { H5Tclose(type) }
        let elementSize = UInt64(H5Tget_size(type))
        let elements = UInt64(try checkHDF5("H5Sget_simple_extent_npoints", path: path, H5Sget_simple_extent_npoints(space)))
        let (needed, overflow) = elements.multipliedReportingOverflow(by: elementSize)
        let stored = UInt64(H5Dget_storage_size(dataset))
        guard !overflow, stored >= needed else {
            throw HDF5Error(call: "H5Dread", path: path,
                            reason: "dataset '\(name)' stores \(stored) bytes; its \(elements) elements of \(elementSize) bytes need \(overflow ? "more than \(UInt64.max)" : String(needed)) (a damaged file)")
        }
    }

    private func openDataset(_ name: String) throws(HDF5Error) -> hid_t {
        guard contains(name) else {
            throw HDF5Error(call: "H5Dopen2", path: path, reason: "no dataset named '\(name)'")
        }
        return try checkHDF5("H5Dopen2", path: path, H5Dopen2(handle, name, meshlm_h5p_default()))
    }
}
