import CZstd
import Foundation

/// A file written under a temporary name (`.NAME.partial` in the same directory) and renamed to
/// its final name by `finish()`, so a crash never leaves a file that looks complete. Bytes are
/// buffered and, for a `.zst` name, compressed as one zstd stream (with checksum).
public final class AtomicFileWriter {
    public let path: String
    public let temporaryPath: String
    private let descriptor: Int32
    private var buffer = [UInt8]()
    private let bufferLimit = 1 << 20
    private var compressor: OpaquePointer?
    private var compressed = [UInt8]()
    private var done = false
    /// Uncompressed bytes written so far.
    public private(set) var bytesWritten = 0

    /// `compressionLevel` applies to `.zst` names (1 fastest … 19 smallest).
    public init(path: String, compressionLevel: Int32 = 3) throws(DataError) {
        self.path = path
        let directory = (path as NSString).deletingLastPathComponent
        temporaryPath = (directory as NSString).appendingPathComponent("." + (path as NSString).lastPathComponent + ".partial")
        descriptor = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard descriptor >= 0 else {
            throw DataError("\(temporaryPath): cannot be created: \(String(cString: strerror(errno)))")
        }
        if path.hasSuffix(".zst") {
            guard let context = ZSTD_createCCtx() else {
                close(descriptor)
                throw DataError("\(path): zstd: out of memory")
            }
            ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, compressionLevel)
            ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1)
            compressor = context
            compressed = [UInt8](repeating: 0, count: ZSTD_CStreamOutSize())
        }
        buffer.reserveCapacity(bufferLimit + 4096)
    }

    deinit {
        if let compressor { ZSTD_freeCCtx(compressor) }
        if !done {
            close(descriptor)
            unlink(temporaryPath)
        }
    }

    public func write(_ bytes: some Collection<UInt8>) throws(DataError) {
        buffer.append(contentsOf: bytes)
        bytesWritten += bytes.count
        if buffer.count >= bufferLimit { try flush(ending: false) }
    }

    /// Writes `bytes` and a newline.
    public func writeLine(_ bytes: some Collection<UInt8>) throws(DataError) {
        try write(bytes)
        buffer.append(0x0A)
        bytesWritten += 1
    }

    /// Flushes, syncs and renames the file to its final name.
    public func finish() throws(DataError) {
        try flush(ending: true)
        guard fsync(descriptor) == 0 else { throw DataError("\(temporaryPath): fsync failed: \(String(cString: strerror(errno)))") }
        close(descriptor)
        done = true
        guard rename(temporaryPath, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporaryPath)
            throw DataError("\(path): cannot rename \(temporaryPath) into place: \(reason)")
        }
    }

    /// Removes the temporary file (after a failure).
    public func abandon() {
        guard !done else { return }
        done = true
        close(descriptor)
        unlink(temporaryPath)
    }

    private func flush(ending: Bool) throws(DataError) {
        guard let compressor else {
            try writeAll(buffer[...])
            buffer.removeAll(keepingCapacity: true)
            return
        }
        let directive = ending ? ZSTD_e_end : ZSTD_e_continue
        var consumed = 0
        while true {
            // One call of the compressor on the rest of the buffer; output goes to `compressed`.
            let (result, produced, used) = buffer.withUnsafeBytes { raw in
                compressed.withUnsafeMutableBytes { out in
                    var input = ZSTD_inBuffer(src: raw.baseAddress.map { $0 + consumed }, size: raw.count - consumed, pos: 0)
                    var output = ZSTD_outBuffer(dst: out.baseAddress, size: out.count, pos: 0)
                    let result = ZSTD_compressStream2(compressor, &output, &input, directive)
                    return (result, output.pos, input.pos)
                }
            }
            if ZSTD_isError(result) != 0 {
                throw DataError("\(path): zstd compression failed: \(String(cString: ZSTD_getErrorName(result)))")
            }
            consumed += used
            try writeAll(compressed[..<produced])
            // `result` is what the compressor still holds to flush; with ZSTD_e_end the frame is
            // complete only at 0.
            if consumed == buffer.count && (!ending || result == 0) { break }
        }
        buffer.removeAll(keepingCapacity: true)
    }

    private func writeAll(_ bytes: ArraySlice<UInt8>) throws(DataError) {
        var offset = 0
        while offset < bytes.count {
            let count = bytes.withUnsafeBytes { raw in Foundation.write(descriptor, raw.baseAddress.map { $0 + offset }, raw.count - offset) }
            if count < 0 {
                if errno == EINTR { continue }
                throw DataError("\(temporaryPath): write failed: \(String(cString: strerror(errno)))")
            }
            offset += count
        }
    }
}
