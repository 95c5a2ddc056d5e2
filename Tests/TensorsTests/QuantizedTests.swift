import CSupport
import Foundation
import TensorComparison
import Testing
import Tensors

/// `QuantizedMatrix`: llama.cpp's block layouts, and the quantize → dequantize error bound of
/// each format, element by element.
@Suite struct QuantizedMatrixTests {
    /// Every element satisfies the bound its block's comment states; Q8_0 blocks with a normal
    /// f16 scale stay within d/2, and a block's largest element is where Q4_0 is exact up to its
    /// scale's f16 rounding. Normal weights, heavy-tailed ones over three decades, tiny ones
    /// (subnormal f16 scales) and a zero row.
    @Test(arguments: QuantizedFormat.allCases, [(48, 128, 1.0), (300, 256, 1000.0), (7, 64, 1e-6)])
    func roundTripWithinTheBound(format: QuantizedFormat, shape: (rows: Int, columns: Int, spread: Double)) {
        let (rows, columns) = (shape.rows, shape.columns)
        var values = randomValues(rows * columns, seed: UInt64(rows * 1000 + columns), scale: 0.05)
        let spread = randomValues(rows * columns, seed: 77)
        for index in values.indices { values[index] *= Float(pow(shape.spread, Double(spread[index]))) }
        for column in 0..<columns { values[column] = 0 }
        let matrix = values.withUnsafeBufferPointer {
            QuantizedMatrix(quantizing: $0.baseAddress!, rowCount: rows, columnCount: columns, format: format)
        }
        #expect(matrix.byteCount == rows * columns / 32 * format.blockBytes)
        let restored = matrix.dequantized()
        var worst: Float = 0, beyondHalfScale = 0
        for block in 0..<(rows * columns / 32) {
            let range = block * 32..<(block + 1) * 32
            let bound = values[range].withUnsafeBufferPointer { QuantizedMatrix.errorBound(format, block: $0) }
            let d = abs(matrix.scale(row: block / (columns / 32), block: block % (columns / 32)))
            for index in range {
                let error = abs(values[index] - restored[index])
                worst = max(worst, error / max(bound, .leastNormalMagnitude))
                if format == .q8_0 && d >= Float(Float16.leastNormalMagnitude) && error > d / 2 * (1 + 1e-6) { beyondHalfScale += 1 }
            }
        }
        print("\(format) \(rows)×\(columns) spread \(shape.spread): worst error / bound \(worst)")
        #expect(worst <= 1)
        #expect(beyondHalfScale == 0)
        // The zero row dequantizes to zeros exactly.
        #expect(restored[0..<columns].allSatisfy { $0 == 0 })
    }

    /// One block by hand, byte for byte as llama.cpp's reference quantizers write it: the f16
    /// scale first; Q8_0's codes in order; Q4_0's element j in the low nibble of byte j and
    /// element j + 16 in the high nibble, with the largest-magnitude element at code 0.
    @Test func blockLayouts() {
        // x_j = (j − 16) / 4: largest magnitude −4 at j = 0.
        let values = (0..<32).map { Float($0 - 16) / 4 }
        let q8 = values.withUnsafeBufferPointer { QuantizedMatrix(quantizing: $0.baseAddress!, rowCount: 1, columnCount: 32, format: .q8_0) }
        let q8Bytes = [UInt8](UnsafeRawBufferPointer(start: q8.blocks, count: q8.byteCount))
        #expect(q8Bytes.count == 34)
        #expect(UInt16(q8Bytes[0]) | UInt16(q8Bytes[1]) << 8 == Float16(Float(4) / 127).bitPattern)
        let d8 = Float(Float16(Float(4) / 127))
        #expect((0..<32).allSatisfy { Int8(bitPattern: q8Bytes[2 + $0]) == Int8(max(-127, min(127, (values[$0] / d8).rounded()))) })
        #expect(Int8(bitPattern: q8Bytes[2]) == -127)

        // Q4_0 on values that are codes exactly: x_j = (c_j − 8) / 4 with c_0 = 0 (x_0 = −2, the
        // largest magnitude, so d = −2 / −8 = 0.25) and c_j = 7j mod 16 after it.
        let codes = (0..<32).map { $0 == 0 ? 0 : 7 * $0 % 16 }
        let exact = codes.map { Float($0 - 8) / 4 }
        let q4 = exact.withUnsafeBufferPointer { QuantizedMatrix(quantizing: $0.baseAddress!, rowCount: 1, columnCount: 32, format: .q4_0) }
        let q4Bytes = [UInt8](UnsafeRawBufferPointer(start: q4.blocks, count: q4.byteCount))
        #expect(q4Bytes.count == 18)
        #expect(UInt16(q4Bytes[0]) | UInt16(q4Bytes[1]) << 8 == Float16(0.25).bitPattern)
        #expect((0..<16).allSatisfy { q4Bytes[2 + $0] == UInt8(codes[$0]) | UInt8(codes[$0 + 16]) << 4 })
        expectSameBits(q4.dequantized(), exact, "q4_0 of values on its grid")
        // Off the grid, an element of the other sign beyond 7.5·d takes code 15 (7·d).
        let clamped = [Float(-2), 1.9] + [Float](repeating: 0, count: 30)
        let q4Clamped = clamped.withUnsafeBufferPointer { QuantizedMatrix(quantizing: $0.baseAddress!, rowCount: 1, columnCount: 32, format: .q4_0) }
        #expect(q4Clamped.dequantized()[0..<2] == [-2, 1.75])
    }

    @Test func tensorsAndFormatsSizes() {
        #expect(QuantizedFormat.blockSize == 32)
        #expect(QuantizedFormat.q8_0.byteCount(elements: 768 * 768) == 768 * 24 * 34)
        #expect(QuantizedFormat.q4_0.byteCount(elements: 64) == 36)
    }
}

/// `QuantizedLinear`: every kernel variant this CPU runs against the dequantize-then-f32
/// product (activations quantized by an independent Swift copy of the rule), the integer block
/// sums exactly, and batch and thread invariance bit for bit.
@Suite struct QuantizedLinearTests {
    static let variants = QuantizedLinear.Variant.allCases

    /// The activation rule, written again: per block of 32, s = max|x| / 127 and
    /// q = round(x · 127 / max|x|) clamped to ±127.
    static func quantizeActivations(_ x: [Float]) -> (codes: [Int8], scales: [Float]) {
        var codes: [Int8] = [], scales: [Float] = []
        for start in stride(from: 0, to: x.count, by: 32) {
            let largest = x[start..<start + 32].map(abs).max()!
            scales.append(largest / 127)
            let inverse = largest > 0 ? 127 / largest : 0
            codes += x[start..<start + 32].map { Int8(max(-127, min(127, ($0 * inverse).rounded()))) }
        }
        return (codes, scales)
    }

    static func matrix(_ format: QuantizedFormat, rows: Int, columns: Int, seed: UInt64) -> QuantizedMatrix {
        randomValues(rows * columns, seed: seed, scale: 0.05).withUnsafeBufferPointer {
            QuantizedMatrix(quantizing: $0.baseAddress!, rowCount: rows, columnCount: columns, format: format)
        }
    }

    static func run(_ weight: QuantizedMatrix, _ input: [Float], rows: Int, threads: Int = 1,
                    variant: QuantizedLinear.Variant) -> [Float] {
        var output = [Float](repeating: .nan, count: rows * weight.rowCount)
        let scratch = QuantizedLinear.Scratch(rowCount: rows, columnCount: weight.columnCount)
        input.withUnsafeBufferPointer { input in
            output.withUnsafeMutableBufferPointer { output in
                QuantizedLinear.multiply(output: output.baseAddress!, input: input.baseAddress!, weight: weight, rowCount: rows,
                                         scratch: scratch, threads: KernelThreads(count: threads), variant: variant)
            }
        }
        return output
    }

    /// Against Σ x̂_w · x̂_x in Double (x̂ both dequantized): equal up to the f32 sums of the
    /// scaled block sums, stated as 2e-5 of the largest output; and against the unquantized
    /// activations within Σ |x̂_w| · s_x / 2 (activation rounding) per output.
    @Test(arguments: QuantizedFormat.allCases, variants)
    func matchesDequantizedProduct(format: QuantizedFormat, variant: QuantizedLinear.Variant) throws {
        if !variant.isAvailable { try Test.cancel("the \(variant) kernel does not run on this CPU") }
        let (rows, inputSize, outputSize) = (5, 768, 67)
        let weight = Self.matrix(format, rows: outputSize, columns: inputSize, seed: 11)
        let input = randomValues(rows * inputSize, seed: 12, scale: 2)
        let output = Self.run(weight, input, rows: rows, variant: variant)
        let w = weight.dequantized()
        var expected: [Double] = [], activationBound: [Double] = [], unquantized: [Double] = []
        for row in 0..<rows {
            let x = Array(input[row * inputSize..<(row + 1) * inputSize])
            let (codes, scales) = Self.quantizeActivations(x)
            for column in 0..<outputSize {
                var sum = 0.0, exact = 0.0, bound = 0.0
                for k in 0..<inputSize {
                    let weightValue = Double(w[column * inputSize + k])
                    sum += weightValue * Double(Float(codes[k]) * scales[k / 32])
                    exact += weightValue * Double(x[k])
                    bound += abs(weightValue) * Double(scales[k / 32]) / 2 * (1 + 1e-5)
                }
                expected.append(sum)
                unquantized.append(exact)
                activationBound.append(bound)
            }
        }
        expectClose(output, expected, relativeTolerance: 2e-5, "\(format) \(variant) vs dequantize-then-f32")
        let outside = zip(zip(output, unquantized), activationBound).filter { abs(Double($0.0) - $0.1) > $1 + 1e-5 }.count
        #expect(outside == 0, "\(outside) outputs beyond the activation-rounding bound")
    }

    /// The integer part of a block's dot, exactly: the C block sum against Swift's Σ q_w · q_x
    /// on the dequantized codes, over blocks that hit the extremes (±127, codes 0 and 15).
    @Test(arguments: QuantizedFormat.allCases)
    func blockSumsAreExact(format: QuantizedFormat) {
        let columns = 32 * 40
        var values = randomValues(columns, seed: 5, scale: 1)
        values[3] = 4; values[40] = -4
        let weight = values.withUnsafeBufferPointer {
            QuantizedMatrix(quantizing: $0.baseAddress!, rowCount: 1, columnCount: columns, format: format)
        }
        let activations = Self.quantizeActivations(randomValues(columns, seed: 6, scale: 3)).codes
        let restored = weight.dequantized()
        var mismatches = 0
        for block in 0..<weight.blocksPerRow {
            let d = weight.scale(row: 0, block: block)
            var expected: Int32 = 0
            for element in 0..<32 where d != 0 {
                expected += Int32((restored[block * 32 + element] / d).rounded()) * Int32(activations[block * 32 + element])
            }
            let sum = activations.withUnsafeBufferPointer { codes in
                meshlm_quant_block_sum(Int32(format == .q8_0 ? MESHLM_Q8_0 : MESHLM_Q4_0),
                                       (weight.blocks + block * format.blockBytes).assumingMemoryBound(to: UInt8.self),
                                       codes.baseAddress! + block * 32)
            }
            if sum != expected { mismatches += 1 }
        }
        #expect(mismatches == 0)
    }

    /// A row's outputs are the same bits alone, in a batch of 8 or 16, and on 1 or 2 threads.
    @Test(arguments: QuantizedFormat.allCases, variants)
    func batchAndThreadInvariance(format: QuantizedFormat, variant: QuantizedLinear.Variant) throws {
        if !variant.isAvailable { try Test.cancel("the \(variant) kernel does not run on this CPU") }
        let (inputSize, outputSize) = (256, 130)
        let weight = Self.matrix(format, rows: outputSize, columns: inputSize, seed: 21)
        let batch = randomValues(16 * inputSize, seed: 22)
        let sixteen = Self.run(weight, batch, rows: 16, threads: 2, variant: variant)
        let eight = Self.run(weight, Array(batch[0..<8 * inputSize]), rows: 8, variant: variant)
        expectSameBits(eight, Array(sixteen[0..<8 * outputSize]), "8 rows on 1 thread vs the first 8 of 16 on 2")
        for row in [0, 5, 15] {
            let alone = Self.run(weight, Array(batch[row * inputSize..<(row + 1) * inputSize]), rows: 1, variant: variant)
            expectSameBits(alone, Array(sixteen[row * outputSize..<(row + 1) * outputSize]), "row \(row) alone vs in 16")
        }
    }
}
