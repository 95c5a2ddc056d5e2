import CSupport

/// The block formats of weight-only quantized inference (issue 18), in llama.cpp's layouts so
/// a later GGUF import copies blocks unchanged. Every block holds 32 consecutive weights of one
/// row and starts with its scale d as an IEEE half:
///
///     q8_0   d, then 32 int8 q                 x̂ = q · d          34 bytes (8.5 bits a weight)
///     q4_0   d, then 16 bytes of 4-bit codes   x̂ = (q − 8) · d    18 bytes (4.5 bits a weight)
///            (element j in the low nibble of byte j, element j + 16 in its high nibble)
///
/// QLoRA's NF4 (`NF4Matrix`) is the third 4-bit format; it keeps bitsandbytes' layout (blocks
/// of 64, double-quantized scales) and is not served by these kernels yet.
public enum QuantizedFormat: String, Sendable, CaseIterable, Codable {
    case q8_0
    case q4_0

    /// Weights per block.
    public static let blockSize = Int(MESHLM_QUANT_BLOCK)

    /// Bytes of one block: the f16 scale and the codes.
    public var blockBytes: Int {
        switch self {
        case .q8_0: 34
        case .q4_0: 18
        }
    }

    /// The C kernels' name for it.
    var code: Int32 {
        switch self {
        case .q8_0: Int32(MESHLM_Q8_0)
        case .q4_0: Int32(MESHLM_Q4_0)
        }
    }

    /// Bytes of `elements` weights (a multiple of `blockSize`).
    public func byteCount(elements: Int) -> Int { elements / Self.blockSize * blockBytes }
}

/// A row-major [rowCount, columnCount] matrix in a `QuantizedFormat`: each row is
/// columnCount / 32 blocks, rows stored one after another (`rowBytes` each), 64-byte aligned.
///
/// Quantizing (per block of 32, with the scale rounded to f16 before the codes are chosen, so
/// the codes fit the scale that dequantization uses):
///
///     q8_0   d = max |x| / 127 (as f16),  q = round(x / d) clamped to ±127
///            |x − x̂| ≤ d/2, or 127·|d₃₂ − d| where the f16 rounding of d₃₂ clamps the largest
///            element (d₃₂ the exact scale; never more than d/2 while d is a normal half)
///     q4_0   m = the element of largest magnitude, with its sign;  d = m / −8 (as f16),
///            q = ⌊x / d + 8.5⌋ clamped to 0…15   (llama.cpp's rule: m itself is code 0)
///            |x − x̂| ≤ |d|/2 for codes 1…14 and for code 0; elements of the other sign than m
///            beyond 7.5·|d| take code 15 and are off by up to |d| (+ 8·|d₃₂ − d|)
///
/// `errorBound` states these per block. Immutable after `init`.
public final class QuantizedMatrix: @unchecked Sendable {
    public let format: QuantizedFormat
    public let rowCount: Int
    public let columnCount: Int
    /// columnCount / 32.
    public let blocksPerRow: Int
    /// Bytes of one row's blocks.
    public let rowBytes: Int
    /// rowCount · rowBytes bytes of blocks.
    public let blocks: UnsafeMutableRawPointer

    /// An uninitialized matrix whose `blocks` the caller fills (a checkpoint's bytes).
    public init(format: QuantizedFormat, rowCount: Int, columnCount: Int) {
        precondition(rowCount >= 0 && columnCount >= 0 && columnCount % QuantizedFormat.blockSize == 0,
                     "a \(rowCount)×\(columnCount) matrix: quantized rows are whole blocks of \(QuantizedFormat.blockSize)")
        self.format = format
        self.rowCount = rowCount
        self.columnCount = columnCount
        blocksPerRow = columnCount / QuantizedFormat.blockSize
        rowBytes = blocksPerRow * format.blockBytes
        blocks = .allocate(byteCount: Swift.max(1, rowCount * rowBytes), alignment: 64)
    }

    /// Quantizes the row-major [rowCount, columnCount] matrix at `values` (columnCount a multiple
    /// of 32). Rows are quantized in parallel; the bytes do not depend on the thread count.
    public convenience init(quantizing values: UnsafePointer<Float>, rowCount: Int, columnCount: Int,
                            format: QuantizedFormat, threads: KernelThreads = .single) {
        self.init(format: format, rowCount: rowCount, columnCount: columnCount)
        let (blocks, rowBytes, blocksPerRow) = (blocks, rowBytes, blocksPerRow)
        threads.parallelFor(0..<rowCount, minimumChunk: 16) { rows in
            for row in rows {
                for block in 0..<blocksPerRow {
                    let source = values + row * columnCount + block * QuantizedFormat.blockSize
                    let destination = blocks + row * rowBytes + block * format.blockBytes
                    switch format {
                    case .q8_0: Self.quantizeQ8(source, into: destination)
                    case .q4_0: Self.quantizeQ4(source, into: destination)
                    }
                }
            }
        }
    }

    deinit { blocks.deallocate() }

    /// Bytes of all blocks.
    public var byteCount: Int { rowCount * rowBytes }

    /// The scale d of block `block` of row `row`.
    public func scale(row: Int, block: Int) -> Float {
        let bits = (blocks + row * rowBytes + block * format.blockBytes).loadUnaligned(as: UInt16.self)
        return meshlm_f16_to_f32(bits)
    }

    /// Writes x̂ of rows `rows` into `output` ([rows.count, columnCount], contiguous).
    public func dequantize(rows: Range<Int>, into output: UnsafeMutablePointer<Float>) {
        precondition(rows.lowerBound >= 0 && rows.upperBound <= rowCount, "rows \(rows) outside the \(rowCount) of the matrix")
        let half = QuantizedFormat.blockSize / 2
        for (index, row) in rows.enumerated() {
            for block in 0..<blocksPerRow {
                let source = blocks + row * rowBytes + block * format.blockBytes
                let d = meshlm_f16_to_f32(source.loadUnaligned(as: UInt16.self))
                let destination = output + index * columnCount + block * QuantizedFormat.blockSize
                let codes = source + 2
                switch format {
                case .q8_0:
                    for element in 0..<QuantizedFormat.blockSize {
                        destination[element] = Float(codes.load(fromByteOffset: element, as: Int8.self)) * d
                    }
                case .q4_0:
                    for element in 0..<half {
                        let byte = codes.load(fromByteOffset: element, as: UInt8.self)
                        destination[element] = Float(Int(byte & 0x0F) - 8) * d
                        destination[element + half] = Float(Int(byte >> 4) - 8) * d
                    }
                }
            }
        }
    }

    /// The whole x̂, row-major (tests and tools; never in the serving path).
    public func dequantized() -> [Float] {
        [Float](unsafeUninitializedCapacity: rowCount * columnCount) { buffer, initialized in
            if let base = buffer.baseAddress { dequantize(rows: 0..<rowCount, into: base) }
            initialized = rowCount * columnCount
        }
    }

    /// The largest |x − x̂| of any element of the 32 `values` of one block once quantized
    /// (the bounds of the type's comment, with a few ulps for the f32 products).
    public static func errorBound(_ format: QuantizedFormat, block values: UnsafeBufferPointer<Float>) -> Float {
        switch format {
        case .q8_0:
            let exact = values.reduce(0) { Swift.max($0, Swift.abs($1)) } / 127
            let d = Float(Float16(exact))
            return Swift.max(d / 2, 127 * Swift.abs(exact - d)) + 4 * exact.ulp * 127
        case .q4_0:
            let largest = values.reduce(Float(0)) { Swift.abs($1) > Swift.abs($0) ? $1 : $0 }
            let exact = largest / -8
            let d = Swift.abs(Float(Float16(exact)))
            return d + 8 * Swift.abs(Swift.abs(exact) - d) + 16 * Swift.abs(exact).ulp
        }
    }

    // MARK: Quantizing one block

    /// The scale as the blocks store it, and its value.
    @inline(__always)
    private static func half(_ value: Float) -> (bits: UInt16, value: Float) {
        let rounded = Float16(value)
        return (rounded.bitPattern, Float(rounded))
    }

    private static func quantizeQ8(_ values: UnsafePointer<Float>, into block: UnsafeMutableRawPointer) {
        var largest: Float = 0
        for element in 0..<QuantizedFormat.blockSize { largest = Swift.max(largest, Swift.abs(values[element])) }
        let scale = half(largest / 127)
        block.storeBytes(of: scale.bits, toByteOffset: 0, as: UInt16.self)
        let inverse = scale.value > 0 ? 1 / scale.value : 0
        for element in 0..<QuantizedFormat.blockSize {
            let code = Swift.min(127, Swift.max(-127, (values[element] * inverse).rounded()))
            block.storeBytes(of: Int8(code), toByteOffset: 2 + element, as: Int8.self)
        }
    }

    private static func quantizeQ4(_ values: UnsafePointer<Float>, into block: UnsafeMutableRawPointer) {
        var largest: Float = 0
        for element in 0..<QuantizedFormat.blockSize where Swift.abs(values[element]) > Swift.abs(largest) {
            largest = values[element]
        }
        let scale = half(largest / -8)
        block.storeBytes(of: scale.bits, toByteOffset: 0, as: UInt16.self)
        let inverse = scale.value != 0 ? 1 / scale.value : 0
        let half = QuantizedFormat.blockSize / 2
        func code(_ value: Float) -> UInt8 {
            UInt8(Swift.min(15, Swift.max(0, (value * inverse + 8.5).rounded(.down))))
        }
        for element in 0..<half {
            let byte = code(values[element]) | code(values[element + half]) << 4
            block.storeBytes(of: byte, toByteOffset: 2 + element, as: UInt8.self)
        }
    }
}
