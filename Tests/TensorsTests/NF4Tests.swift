import Foundation
import TensorComparison
import Testing
import Tensors

/// `NF4Matrix`: the code tables, the round trip error bound, partial dequantization and
/// determinism. Parity with bitsandbytes itself is `NF4ParityTests` (ModelTests, on a fixture).
@Suite struct NF4MatrixTests {
    init() { useSingleThreadedBLAS() }

    /// The 16 NF4 values are sorted, span [−1, 1] with an exact 0; the 256 dynamic 8-bit
    /// values are sorted and distinct but for the padding-free map's single 0, and hold ±1's
    /// neighbours. The half gaps the error bound uses are the stated ones.
    @Test func codeTables() {
        let codes = NF4Matrix.codes, scaleCodes = NF4Matrix.scaleCodes
        #expect(codes.count == 16 && scaleCodes.count == 256)
        #expect(codes.first == -1 && codes.last == 1 && codes[7] == 0)
        #expect(zip(codes, codes.dropFirst()).allSatisfy { $0 < $1 })
        #expect(zip(scaleCodes, scaleCodes.dropFirst()).allSatisfy { $0 < $1 })
        #expect(scaleCodes.last == 1 && scaleCodes.contains(0))
        // −1 to −0.6961928: the widest NF4 gap.
        #expect(abs(NF4Matrix.codeHalfGap - (1 - 0.6961928) / 2) < 1e-6)
        // Near ±1 the dynamic map steps by 0.9 / 64 (the 64 midpoints of linspace(0.1, 1, 65)).
        #expect(abs(NF4Matrix.scaleCodeHalfGap - 0.9 / 64 / 2) < 1e-6)
    }

    /// Every element satisfies |x − x̂| ≤ codeHalfGap · a + scaleCodeHalfGap · s + rounding
    /// (a its block's absmax, s its scale group's largest |a − mean a|), on normal weights, on
    /// heavy-tailed ones whose absmaxes spread over three decades, and on a size that is not a
    /// multiple of 64 or of 256 blocks. The bound is reached to within a factor of two, so a
    /// looser quantizer fails.
    @Test(arguments: [(48, 128, false), (300, 257, true), (7, 100, false), (1, 64, true)])
    func roundTripWithinTheBound(rows: Int, columns: Int, heavyTailed: Bool) {
        var values = randomValues(rows * columns, seed: UInt64(rows * 1000 + columns), scale: 0.1)
        if heavyTailed {
            let spread = randomValues(rows * columns, seed: 77)
            for index in values.indices { values[index] *= Float(pow(10, 1.5 * Double(spread[index] + 1))) / 100 }
        }
        let matrix = values.withUnsafeBufferPointer { NF4Matrix(quantizing: $0.baseAddress!, rowCount: rows, columnCount: columns) }
        let restored = matrix.dequantized()

        let count = rows * columns, blockSize = NF4Matrix.blockSize
        let blockCount = (count + blockSize - 1) / blockSize
        let absmax = (0..<blockCount).map { block in
            values[block * blockSize..<min(count, (block + 1) * blockSize)].map(abs).max() ?? 0
        }
        let mean = Float(absmax.reduce(0.0) { $0 + Double($1) } / Double(blockCount))
        let groupSize = NF4Matrix.scaleBlockSize
        let groupScales = stride(from: 0, to: blockCount, by: groupSize).map { start in
            absmax[start..<min(blockCount, start + groupSize)].map { abs($0 - mean) }.max() ?? 0
        }
        var worst: Float = 0, violations = 0
        for index in 0..<count {
            let block = index / blockSize
            let bound = NF4Matrix.errorBound(absmax: absmax[block], groupScale: groupScales[block / groupSize])
            let error = abs(values[index] - restored[index])
            if error > bound { violations += 1 }
            worst = max(worst, error / bound)
        }
        print("NF4 \(rows)×\(columns)\(heavyTailed ? " heavy-tailed" : ""): largest error / bound \(worst)")
        #expect(violations == 0, "\(violations) of \(count) elements beyond the bound")
        #expect(worst > 0.5, "the bound should be nearly reached")
        #expect(matrix.byteCount < count / 2 + count / 64 + 4 * (blockCount / groupSize + 1) + 8)
    }

    /// Dequantizing any element range, any row range or a column slice writes exactly the bits
    /// of the whole dequantization there (odd starts and ends split bytes; ranges cross blocks).
    @Test func partialDequantizationMatchesTheWhole() {
        let (rows, columns) = (9, 70)
        let values = randomValues(rows * columns, seed: 5)
        let matrix = values.withUnsafeBufferPointer { NF4Matrix(quantizing: $0.baseAddress!, rowCount: rows, columnCount: columns) }
        let whole = matrix.dequantized()
        for range in [0..<1, 1..<2, 3..<130, 63..<65, 127..<600, 0..<630, 629..<630] {
            var part = [Float](repeating: .nan, count: range.count)
            part.withUnsafeMutableBufferPointer { matrix.dequantize(elements: range, into: $0.baseAddress!) }
            expectSameBits(part, Array(whole[range]), "elements \(range)")
        }
        let (rowRange, columnRange) = (2..<7, 5..<66)
        var slice = [Float](repeating: .nan, count: rowRange.count * 80)
        slice.withUnsafeMutableBufferPointer {
            matrix.dequantize(rows: rowRange, columns: columnRange, into: $0.baseAddress!, outputStride: 80)
        }
        let expected = rowRange.flatMap { row in whole[row * columns + columnRange.lowerBound..<row * columns + columnRange.upperBound] }
        let actual = (0..<rowRange.count).flatMap { slice[$0 * 80..<$0 * 80 + columnRange.count] }
        expectSameBits(actual, expected, "rows \(rowRange), columns \(columnRange)")
    }

    /// Quantizing on 1, 2 or 3 threads stores the same codes; a zero matrix restores to zeros.
    @Test func quantizationIgnoresThreadCountAndKeepsZeros() {
        let (rows, columns) = (64, 192)
        let values = randomValues(rows * columns, seed: 9)
        let results = [1, 2, 3].map { threads in
            values.withUnsafeBufferPointer {
                NF4Matrix(quantizing: $0.baseAddress!, rowCount: rows, columnCount: columns, threads: KernelThreads(count: threads)).dequantized()
            }
        }
        expectSameBits(results[1], results[0], "2 threads vs 1")
        expectSameBits(results[2], results[0], "3 threads vs 1")
        let zeros = [Float](repeating: 0, count: 3 * 64)
        let matrix = zeros.withUnsafeBufferPointer { NF4Matrix(quantizing: $0.baseAddress!, rowCount: 3, columnCount: 64) }
        expectSameBits(matrix.dequantized(), zeros, "zeros")
    }
}

/// `NF4Matmul` against `Matmul` on the dequantized weight, and across thread counts.
@Suite struct NF4MatmulTests {
    init() { useSingleThreadedBLAS() }

    /// Sizes with a ragged last tile (300 = 2·128 + 44 output rows), a row width that is not a
    /// multiple of 64 (blocks cross rows), and a tile of 128 input columns cut mid-block.
    static let sizes = [(rows: 37, input: 200, output: 300), (rows: 64, input: 256, output: 128), (rows: 5, input: 96, output: 20)]

    /// y = x·x̂ᵀ + bias equals `Matmul.forward` on the whole dequantized weight within sgemm's
    /// rounding (the tiles are separate sgemm calls: relative 1e-6 of the output's scale), and
    /// the bits do not depend on the thread count.
    @Test func forwardMatchesDequantizedMatmul() {
        for (index, size) in Self.sizes.enumerated() {
            let weightValues = randomValues(size.output * size.input, seed: UInt64(10 + index), scale: 0.2)
            let weight = weightValues.withUnsafeBufferPointer {
                NF4Matrix(quantizing: $0.baseAddress!, rowCount: size.output, columnCount: size.input)
            }
            let input = randomValues(size.rows * size.input, seed: UInt64(20 + index))
            let bias = randomValues(size.output, seed: UInt64(30 + index))
            let expected = withBuffers([input, weight.dequantized(), bias, [Float](repeating: 0, count: size.rows * size.output)]) { p in
                Matmul.forward(output: p[3], input: p[0], weight: p[1], bias: p[2],
                               rowCount: size.rows, inputSize: size.input, outputSize: size.output)
            }[3]
            let results = [1, 2, 3].map { threads in
                withBuffers([input, bias, [Float](repeating: .nan, count: size.rows * size.output)]) { p in
                    NF4Matmul.forward(output: p[2], input: p[0], weight: weight, bias: p[1],
                                      rowCount: size.rows, inputSize: size.input, outputSize: size.output,
                                      threads: KernelThreads(count: threads))
                }[2]
            }
            let label = "NF4Matmul.forward \(size)"
            expectClose(results[0], expected, relativeTolerance: 1e-6, label)
            expectSameBits(results[1], results[0], "\(label), 2 threads vs 1")
            expectSameBits(results[2], results[0], "\(label), 3 threads vs 1")
        }
    }

    /// dx += g·x̂ accumulates onto what dx held, equals `Matmul.backward`'s input gradient on the
    /// dequantized weight within sgemm's rounding, and keeps its bits on any thread count.
    @Test func inputGradientMatchesDequantizedMatmul() {
        for (index, size) in Self.sizes.enumerated() {
            let weightValues = randomValues(size.output * size.input, seed: UInt64(40 + index), scale: 0.2)
            let weight = weightValues.withUnsafeBufferPointer {
                NF4Matrix(quantizing: $0.baseAddress!, rowCount: size.output, columnCount: size.input)
            }
            let outputGradient = randomValues(size.rows * size.output, seed: UInt64(50 + index))
            let initial = randomValues(size.rows * size.input, seed: UInt64(60 + index))
            let unused = [Float](repeating: 0, count: size.rows * size.input)
            let expected = withBuffers([outputGradient, weight.dequantized(), initial, unused]) { p in
                Matmul.backward(inputGradient: p[2], weightGradient: nil, biasGradient: nil, outputGradient: p[0],
                                input: p[3], weight: p[1], rowCount: size.rows, inputSize: size.input, outputSize: size.output)
            }[2]
            let results = [1, 2, 3].map { threads in
                withBuffers([outputGradient, initial]) { p in
                    NF4Matmul.backward(inputGradient: p[1], outputGradient: p[0], weight: weight,
                                       rowCount: size.rows, inputSize: size.input, outputSize: size.output,
                                       threads: KernelThreads(count: threads))
                }[1]
            }
            let label = "NF4Matmul.backward \(size)"
            expectClose(added(results[0], over: initial), added(expected, over: initial), relativeTolerance: 1e-5, label)
            expectSameBits(results[1], results[0], "\(label), 2 threads vs 1")
            expectSameBits(results[2], results[0], "\(label), 3 threads vs 1")
        }
    }
}
