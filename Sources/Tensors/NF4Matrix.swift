/// A matrix stored in NF4 (4-bit NormalFloat, Dettmers et al. 2023, "QLoRA"), with double-quantized
/// block scales, as bitsandbytes' `quantize_4bit(quant_type="nf4", blocksize=64,
/// compress_statistics=True)` stores it:
///
///     element i of the row-major [rowCount, columnCount] matrix belongs to block b = i / 64
///     a[b]      = max |x| over block b                       (f32, then compressed:)
///     offset    = mean of a[b] over all blocks               (f32)
///     s[g]      = max |a[b] − offset| over group g = b / 256  (f32, one per 256 blocks)
///     q8[b]     = nearest `scaleCodes` entry to (a[b] − offset) / s[g]   (8 bits per block)
///     â[b]      = scaleCodes[q8[b]] · s[g] + offset                      (the scale dequantization uses)
///     code[i]   = nearest `codes` entry to x[i] · (1 / a[b])            (4 bits per element)
///     x̂[i]      = codes[code[i]] · â[b]
///
/// Codes are packed two per byte, element 2k in the high nibble (bitsandbytes' packing). Blocks
/// run over the flat matrix; with columnCount a multiple of 64 (every Llama projection) they lie
/// along rows. Weights take 4 + 8/64 + 32/(64·256) ≈ 4.13 bits each.
///
/// Round trip error (`errorBound`): each element is within half the largest gap between NF4 codes
/// times its block's a[b], plus the error of â[b] (half the largest gap between `scaleCodes`
/// times s[g]), plus float rounding.
///
/// Immutable after `init`; the storage is one allocation owned by the matrix. Also the 4-bit
/// block format that quantized inference reuses (issue 18).
public final class NF4Matrix: @unchecked Sendable {
    /// Weights per block scale.
    public static let blockSize = 64
    /// Block scales per second-level f32 scale.
    public static let scaleBlockSize = 256

    /// The 16 NF4 values (bitsandbytes' `get_4bit_type("nf4")`): quantiles of N(0, 1) scaled to
    /// [−1, 1], with an exact 0.
    public static let codes: [Float] = [
        -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
        -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
        0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
        0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
    ]

    /// The 256 values of bitsandbytes' signed dynamic 8-bit map (`create_dynamic_map(signed=True)`,
    /// Dettmers 2016): for exponent e = 0…6, the 2^e midpoints of `linspace(0.1, 1, 2^e + 1)`
    /// times 10^(e−6), both signs, plus 0 and 1, sorted. Fine steps near 0, 1.4 % steps near ±1.
    public static let scaleCodes: [Float] = {
        var values: [Float] = [0, 1]
        for exponent in 0..<7 {
            let bounds = linearSpace(from: 0.1, to: 1, count: (1 << exponent) + 1)
            let magnitude = Float(pow10(exponent - 6))
            for index in 0..<(bounds.count - 1) {
                let mean = (bounds[index] + bounds[index + 1]) / 2
                values.append(magnitude * mean)
                values.append(-magnitude * mean)
            }
        }
        return values.sorted()
    }()

    /// Half the largest gap between consecutive `codes` (between −1 and −0.696).
    public static let codeHalfGap: Float = halfLargestGap(codes)
    /// Half the largest gap between consecutive `scaleCodes` (near ±1).
    public static let scaleCodeHalfGap: Float = halfLargestGap(scaleCodes)

    public let rowCount: Int
    public let columnCount: Int
    /// rowCount · columnCount.
    public let count: Int
    /// ⌈count / 64⌉.
    public let blockCount: Int
    /// The mean of the block absmaxes, added back after the 8-bit dequantization.
    public let scaleOffset: Float

    /// Packed codes, (count + 1) / 2 bytes.
    private let packed: UnsafeMutablePointer<UInt8>
    /// One 8-bit index into `scaleCodes` per block.
    private let blockScaleCodes: UnsafeMutablePointer<UInt8>
    /// One f32 scale per `scaleBlockSize` blocks.
    private let groupScales: UnsafeMutablePointer<Float>
    private var groupCount: Int { (blockCount + Self.scaleBlockSize - 1) / Self.scaleBlockSize }

    /// Quantizes the row-major [rowCount, columnCount] matrix at `values`. Blocks are quantized
    /// in parallel; the result does not depend on the thread count.
    public init(quantizing values: UnsafePointer<Float>, rowCount: Int, columnCount: Int, threads: KernelThreads = .single) {
        precondition(rowCount >= 0 && columnCount >= 0, "negative matrix size \(rowCount)×\(columnCount)")
        self.rowCount = rowCount
        self.columnCount = columnCount
        count = rowCount * columnCount
        let blockCount = (count + Self.blockSize - 1) / Self.blockSize
        self.blockCount = blockCount
        let groupCount = (blockCount + Self.scaleBlockSize - 1) / Self.scaleBlockSize
        packed = .allocate(capacity: Swift.max(1, (count + 1) / 2))
        blockScaleCodes = .allocate(capacity: Swift.max(1, blockCount))
        groupScales = .allocate(capacity: Swift.max(1, groupCount))
        packed.initialize(repeating: 0, count: Swift.max(1, (count + 1) / 2))

        // First level: the absmax of each block, and each element's 4-bit code against it.
        var absmax = [Float](repeating: 0, count: blockCount)
        let (packed, count) = (packed, count)
        let bounds = Self.midpoints(Self.codes)
        absmax.withUnsafeMutableBufferPointer { absmax in
            let absmax = absmax
            // Blocks of 64 are whole bytes, so threads write disjoint bytes.
            threads.parallelFor(0..<blockCount, minimumChunk: 64) { blocks in
                bounds.withUnsafeBufferPointer { bounds in
                    for block in blocks {
                        let elements = block * Self.blockSize..<Swift.min(count, (block + 1) * Self.blockSize)
                        var largest: Float = 0
                        for index in elements { largest = Swift.max(largest, Swift.abs(values[index])) }
                        absmax[block] = largest
                        // bitsandbytes multiplies by the reciprocal, and clamps a zero block's
                        // absmax to 1e-38 (its elements are all 0: code 7).
                        let inverse = 1 / Swift.max(largest, 1e-38)
                        for index in elements {
                            let code = UInt8(Self.bucket(Swift.min(1, Swift.max(-1, values[index] * inverse)), bounds))
                            packed[index >> 1] |= index & 1 == 0 ? code << 4 : code
                        }
                    }
                }
            }
        }

        // Second level (bitsandbytes' nested quantization): the absmaxes less their mean, in
        // groups of 256 blocks, each to the nearest of the 256 dynamic 8-bit values.
        var total: Double = 0
        for value in absmax { total += Double(value) }
        let offset = blockCount == 0 ? 0 : Float(total / Double(blockCount))
        scaleOffset = offset
        let scaleBounds = Self.midpoints(Self.scaleCodes)
        for group in 0..<groupCount {
            let blocks = group * Self.scaleBlockSize..<Swift.min(blockCount, (group + 1) * Self.scaleBlockSize)
            var largest: Float = 0
            for block in blocks { largest = Swift.max(largest, Swift.abs(absmax[block] - offset)) }
            groupScales[group] = largest
            let inverse = 1 / Swift.max(largest, 1e-38)
            scaleBounds.withUnsafeBufferPointer { scaleBounds in
                for block in blocks {
                    let scaled = Swift.min(1, Swift.max(-1, (absmax[block] - offset) * inverse))
                    blockScaleCodes[block] = UInt8(Self.bucket(scaled, scaleBounds))
                }
            }
        }
    }

    deinit {
        packed.deallocate()
        blockScaleCodes.deallocate()
        groupScales.deallocate()
    }

    /// Bytes the matrix holds: codes, 8-bit block scales and f32 group scales (and the offset).
    public var byteCount: Int {
        (count + 1) / 2 + blockCount + 4 * groupCount + 4
    }

    /// â of `block`: the scale its elements are dequantized with.
    @inline(__always)
    public func blockScale(_ block: Int) -> Float {
        Self.scaleCodes.withUnsafeBufferPointer { table in
            table[Int(blockScaleCodes[block])] * groupScales[block / Self.scaleBlockSize] + scaleOffset
        }
    }

    /// The 4-bit code of element `index`.
    @inline(__always)
    public func code(_ index: Int) -> Int {
        let byte = packed[index >> 1]
        return Int(index & 1 == 0 ? byte >> 4 : byte & 0x0F)
    }

    /// The 8-bit scale code of `block` and the f32 scale of its group (for comparing with
    /// bitsandbytes' `quant_state.absmax` and `state2.absmax`).
    public func scaleCode(_ block: Int) -> Int { Int(blockScaleCodes[block]) }
    public func groupScale(_ group: Int) -> Float { groupScales[group] }

    /// Writes x̂ of the flat elements `elements` (row-major order) to `output`, contiguously.
    public func dequantize(elements: Range<Int>, into output: UnsafeMutablePointer<Float>) {
        precondition(elements.lowerBound >= 0 && elements.upperBound <= count, "elements \(elements) outside the \(count) of the matrix")
        Self.codes.withUnsafeBufferPointer { codes in
            var index = elements.lowerBound
            var destination = output
            while index < elements.upperBound {
                let block = index / Self.blockSize
                let end = Swift.min(elements.upperBound, (block + 1) * Self.blockSize)
                let scale = blockScale(block)
                // An odd start takes its low nibble alone; then whole bytes; then an even end's
                // high nibble.
                if index & 1 == 1 {
                    destination.pointee = codes[Int(packed[index >> 1] & 0x0F)] * scale
                    destination += 1
                    index += 1
                }
                while index + 1 < end {
                    let byte = packed[index >> 1]
                    destination[0] = codes[Int(byte >> 4)] * scale
                    destination[1] = codes[Int(byte & 0x0F)] * scale
                    destination += 2
                    index += 2
                }
                if index < end {
                    destination.pointee = codes[Int(packed[index >> 1] >> 4)] * scale
                    destination += 1
                    index += 1
                }
            }
        }
    }

    /// Writes rows `rows`, columns `columns` of x̂ into `output` [rows.count, columns.count] with
    /// row stride `outputStride` (default: columns.count).
    public func dequantize(rows: Range<Int>, columns: Range<Int>? = nil, into output: UnsafeMutablePointer<Float>,
                           outputStride: Int? = nil) {
        let columns = columns ?? 0..<columnCount
        precondition(rows.lowerBound >= 0 && rows.upperBound <= rowCount && columns.lowerBound >= 0 && columns.upperBound <= columnCount,
                     "rows \(rows), columns \(columns) outside the \(rowCount)×\(columnCount) matrix")
        if columns.count == columnCount && (outputStride ?? columnCount) == columnCount {
            dequantize(elements: rows.lowerBound * columnCount..<rows.upperBound * columnCount, into: output)
            return
        }
        let stride = outputStride ?? columns.count
        for (offset, row) in rows.enumerated() {
            dequantize(elements: row * columnCount + columns.lowerBound..<row * columnCount + columns.upperBound,
                       into: output + offset * stride)
        }
    }

    /// The whole x̂, row-major (tests and merging; never in the training path).
    public func dequantized() -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            if let base = buffer.baseAddress { dequantize(elements: 0..<count, into: base) }
            initialized = count
        }
    }

    /// The bound `|x − x̂| ≤ codeHalfGap · a + |a − â| + rounding` for one element of a block
    /// whose absmax is `absmax` (a) in a group whose second-level scale is `groupScale` (s):
    /// |a − â| ≤ scaleCodeHalfGap · s plus its own rounding. Rounding is a few ulps of a and s.
    public static func errorBound(absmax: Float, groupScale: Float) -> Float {
        let rounding = 4 * Float.ulpOfOne * (absmax + groupScale)
        return codeHalfGap * absmax + scaleCodeHalfGap * groupScale + rounding
    }

    // MARK: Tables

    /// torch.linspace in f32 as its CPU kernel rounds it: the first half counted up from
    /// `start`, the second down from `end`, each a fused multiply-add.
    static func linearSpace(from start: Float, to end: Float, count: Int) -> [Float] {
        let step = (end - start) / Float(count - 1)
        let half = count / 2
        return (0..<count).map { index in
            index < half ? start.addingProduct(step, Float(index)) : end.addingProduct(-step, Float(count - 1 - index))
        }
    }

    static func pow10(_ exponent: Int) -> Double {
        var value = 1.0
        for _ in 0..<Swift.abs(exponent) { value *= 10 }
        return exponent < 0 ? 1 / value : value
    }

    /// (table[i] + table[i + 1]) / 2 in f32: the decision bounds of nearest-code rounding.
    static func midpoints(_ table: [Float]) -> [Float] {
        (0..<(table.count - 1)).map { (table[$0] + table[$0 + 1]) / 2 }
    }

    /// The code of `value`: how many bounds lie strictly below it (torch.bucketize, right=False —
    /// a value on a bound takes the lower code).
    @inline(__always)
    static func bucket(_ value: Float, _ bounds: UnsafeBufferPointer<Float>) -> Int {
        var (low, high) = (0, bounds.count)
        while low < high {
            let middle = (low + high) / 2
            if bounds[middle] < value { low = middle + 1 } else { high = middle }
        }
        return low
    }

    static func halfLargestGap(_ table: [Float]) -> Float {
        var largest: Float = 0
        for index in 0..<(table.count - 1) { largest = Swift.max(largest, table[index + 1] - table[index]) }
        return largest / 2
    }
}
