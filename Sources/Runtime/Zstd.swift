import CZstd

/// A zstd frame that could not be made or read.
public struct ZstdError: Error, CustomStringConvertible, Sendable {
    /// The zstd function that failed.
    public let call: String
    public let reason: String
    public var description: String { "\(call) failed: \(reason)" }
}

@inline(__always)
func checkZstd(_ call: StaticString, _ result: Int) throws(ZstdError) -> Int {
    if ZSTD_isError(result) != 0 {
        throw ZstdError(call: "\(call)", reason: String(cString: ZSTD_getErrorName(result)))
    }
    return result
}

/// Whole-buffer zstd compression: one frame per call, with its content size recorded so
/// decompression allocates once. Checkpoint shards and `.zst` documents use it.
public enum Zstd {
    /// Compresses `bytes` into one zstd frame at `level` (1 fast … 19 small; 3 is zstd's default),
    /// with the content size and a content checksum recorded, so a flipped bit fails to decode.
    ///
    /// The corresponding C functions are `ZSTD_CCtx_setParameter` and `ZSTD_compress2`.
    public static func compress(_ bytes: UnsafeRawBufferPointer, level: Int32 = 3) throws -> [UInt8] {
        guard let context = ZSTD_createCCtx() else { throw ZstdError(call: "ZSTD_createCCtx", reason: "out of memory") }
        defer { ZSTD_freeCCtx(context) }
        _ = try checkZstd("ZSTD_CCtx_setParameter", ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level))
        _ = try checkZstd("ZSTD_CCtx_setParameter", ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1))
        let bound = ZSTD_compressBound(bytes.count)
        // Uninitialized: zero-filling a buffer zstd overwrites costs as much as fast compression.
        var failure: (any Error)?
        let output = [UInt8](unsafeUninitializedCapacity: bound) { buffer, count in
            do {
                count = try checkZstd("ZSTD_compress2", ZSTD_compress2(context, buffer.baseAddress, bound, bytes.baseAddress, bytes.count))
            } catch {
                failure = error
                count = 0
            }
        }
        if let failure { throw failure }
        return output
    }

    public static func compress(_ bytes: [UInt8], level: Int32 = 3) throws -> [UInt8] {
        try bytes.withUnsafeBytes { (raw) in try compress(raw, level: level) }
    }

    /// Decompresses one frame. A truncated or corrupt frame, or one without a recorded size,
    /// is an error; `expectedSize` (when given) must match the frame's.
    ///
    /// The corresponding C functions are `ZSTD_getFrameContentSize` and `ZSTD_decompress`.
    public static func decompress(_ frame: UnsafeRawBufferPointer, expectedSize: Int? = nil) throws -> [UInt8] {
        let size = ZSTD_getFrameContentSize(frame.baseAddress, frame.count)
        if size == meshlm_zstd_content_size_error() {
            throw ZstdError(call: "ZSTD_getFrameContentSize", reason: "not a zstd frame")
        }
        if size == meshlm_zstd_content_size_unknown() {
            throw ZstdError(call: "ZSTD_getFrameContentSize", reason: "frame does not record its content size")
        }
        if let expectedSize, expectedSize != Int(size) {
            throw ZstdError(call: "ZSTD_getFrameContentSize", reason: "frame holds \(size) bytes, expected \(expectedSize)")
        }
        var output = [UInt8](repeating: 0, count: Int(size))
        let written = try output.withUnsafeMutableBytes { (out) in
            try checkZstd("ZSTD_decompress", ZSTD_decompress(out.baseAddress, Int(size), frame.baseAddress, frame.count))
        }
        guard written == Int(size) else {
            throw ZstdError(call: "ZSTD_decompress", reason: "frame decompressed to \(written) bytes, header says \(size)")
        }
        return output
    }

    public static func decompress(_ frame: [UInt8], expectedSize: Int? = nil) throws -> [UInt8] {
        try frame.withUnsafeBytes { (raw) in try decompress(raw, expectedSize: expectedSize) }
    }
}
