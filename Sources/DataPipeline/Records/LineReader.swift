import Foundation

/// Splits a byte stream into lines (without their `\n`; a `\r` before it is dropped too).
final class LineReader {
    private let reader: any ByteReader
    private var buffer: [UInt8]
    private var start = 0
    private var end = 0
    private var ended = false
    /// The 1-based number of the line `next()` returned last.
    private(set) var lineNumber = 0

    init(_ reader: any ByteReader, bufferSize: Int = 1 << 20) {
        self.reader = reader
        buffer = [UInt8](repeating: 0, count: bufferSize)
    }

    var fileBytesRead: Int { reader.fileBytesRead }

    /// The next line's bytes, or nil at the end. A last line without `\n` counts.
    func next() throws(DataError) -> ArraySlice<UInt8>? {
        var searchFrom = start
        while true {
            if let newline = buffer[searchFrom..<end].firstIndex(of: UInt8(ascii: "\n")) {
                var line = buffer[start..<newline]
                if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
                start = newline + 1
                lineNumber += 1
                return line
            }
            if ended {
                guard start < end else { return nil }
                let line = buffer[start..<end]
                start = end
                lineNumber += 1
                return line
            }
            // Move the partial line to the front (or grow for a line longer than the buffer).
            let partial = end - start
            if start > 0 {
                buffer.withUnsafeMutableBytes { raw in
                    _ = memmove(raw.baseAddress!, raw.baseAddress! + start, partial)
                }
                start = 0
                end = partial
            }
            if end == buffer.count { buffer += [UInt8](repeating: 0, count: buffer.count) }
            searchFrom = end
            let count = try buffer.withUnsafeMutableBufferPointer { (bytes) throws(DataError) in
                try reader.read(into: UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(bytes)[end...]))
            }
            if count == 0 { ended = true } else { end += count }
        }
    }
}
