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

    /// Stores `bytes` uncompressed in one standard zstd frame (RFC 8878): a single-segment
    /// header with the content size, then raw blocks of at most 128 KiB, each behind its 3-byte
    /// block header. Any zstd decoder reads it, at the speed of a copy; it costs one copy to
    /// make, where compressing costs ~1 ms per MB. For data that compresses little on a machine
    /// whose disk is faster than its compression (checkpoint frames, docs/checkpoints.md).
    /// No content checksum: the caller keeps its own (checkpoints record a CRC-32C per frame).
    public static func store(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        let blockSize = 1 << 17
        let blockCount = max(1, (bytes.count + blockSize - 1) / blockSize)
        let headerCount = 4 + 1 + 8
        let total = headerCount + 3 * blockCount + bytes.count
        return [UInt8](unsafeUninitializedCapacity: total) { buffer, count in
            var at = 0
            func put(_ value: UInt64, _ width: Int) {
                for index in 0..<width { buffer[at + index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
                at += width
            }
            put(0xFD2F_B528, 4)                      // magic number
            put(0b1110_0000, 1)                      // 8-byte content size, single segment, no checksum, no dictionary
            put(UInt64(bytes.count), 8)
            for block in 0..<blockCount {
                let start = block * blockSize, length = min(blockSize, bytes.count - start)
                let isLast: UInt64 = block == blockCount - 1 ? 1 : 0
                put(isLast | (0 << 1) | UInt64(length) << 3, 3)   // last-block flag, type 0 (raw), size
                if length > 0, let source = bytes.baseAddress {
                    UnsafeMutableRawPointer(buffer.baseAddress! + at).copyMemory(from: source + start, byteCount: length)
                }
                at += length
            }
            count = at
        }
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
