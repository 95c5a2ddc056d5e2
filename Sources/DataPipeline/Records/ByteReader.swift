import CZstd
import Foundation

/// A forward-only source of bytes: a file, or a zstd stream decoded on the fly.
protocol ByteReader: AnyObject {
    /// Reads up to `buffer.count` bytes; 0 means the end.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(DataError) -> Int
    /// Bytes consumed from the file on disk so far (compressed bytes for a `.zst`), for progress.
    var fileBytesRead: Int { get }
}

/// Bytes already in memory, handed out in the caller's pieces (the fuzzer's JSONL input).
final class MemoryByteReader: ByteReader {
    private let bytes: [UInt8]
    private(set) var fileBytesRead = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(DataError) -> Int {
        let count = min(buffer.count, bytes.count - fileBytesRead)
        bytes.withUnsafeBytes { source in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[fileBytesRead..<(fileBytesRead + count)]))
        }
        fileBytesRead += count
        return count
    }
}

/// A file read with `read(2)` in the caller's pieces.
final class FileByteReader: ByteReader {
    let path: String
    private let descriptor: Int32
    private(set) var fileBytesRead = 0

    init(path: String) throws(DataError) {
        self.path = path
        descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else { throw DataError("\(path): cannot be opened: \(String(cString: strerror(errno)))") }
    }

    deinit { close(descriptor) }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(DataError) -> Int {
        while true {
            let count = Foundation.read(descriptor, buffer.baseAddress, buffer.count)
            if count >= 0 {
                fileBytesRead += count
                return count
            }
            if errno != EINTR { throw DataError("\(path): read failed: \(String(cString: strerror(errno)))") }
        }
    }
}

/// A zstd file decoded as a stream: any number of frames, with or without recorded sizes, in
/// bounded memory (unlike `Runtime.Zstd`, which decodes one whole frame). A file that ends
/// inside a frame is an error, not a silent short read.
///
/// The corresponding C function is `ZSTD_decompressStream`.
final class ZstdByteReader: ByteReader {
    private let file: FileByteReader
    private let context: OpaquePointer
    private var input: [UInt8]
    private var inputStart = 0
    private var inputEnd = 0
    private var fileEnded = false
    /// `ZSTD_decompressStream`'s last hint: 0 exactly when a frame is complete.
    private var frameRemainder = 0
    private var sawFrame = false

    init(path: String) throws(DataError) {
        file = try FileByteReader(path: path)
        guard let context = ZSTD_createDCtx() else { throw DataError("\(path): zstd: out of memory") }
        self.context = context
        input = [UInt8](repeating: 0, count: ZSTD_DStreamInSize())
    }

    deinit { ZSTD_freeDCtx(context) }

    var fileBytesRead: Int { file.fileBytesRead }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(DataError) -> Int {
        guard buffer.count > 0 else { return 0 }
        while true {
            if inputStart == inputEnd && !fileEnded {
                let count = try input.withUnsafeMutableBufferPointer { (bytes) throws(DataError) in
                    try file.read(into: UnsafeMutableRawBufferPointer(bytes))
                }
                inputStart = 0
                inputEnd = count
                fileEnded = count == 0
            }
            if inputStart == inputEnd && fileEnded {
                guard sawFrame else { throw DataError("\(file.path): empty file, not a zstd stream") }
                guard frameRemainder == 0 else {
                    throw DataError("\(file.path): truncated zstd stream (the file ends inside a frame)")
                }
                return 0
            }
            var output = ZSTD_outBuffer(dst: buffer.baseAddress, size: buffer.count, pos: 0)
            let result = input.withUnsafeBytes { raw in
                var inBuffer = ZSTD_inBuffer(src: raw.baseAddress! + inputStart, size: inputEnd - inputStart, pos: 0)
                let result = ZSTD_decompressStream(context, &output, &inBuffer)
                inputStart += inBuffer.pos
                return result
            }
            if ZSTD_isError(result) != 0 {
                throw DataError("\(file.path): not a valid zstd stream: \(String(cString: ZSTD_getErrorName(result)))")
            }
            sawFrame = true
            frameRemainder = result
            if output.pos > 0 { return output.pos }
        }
    }
}
