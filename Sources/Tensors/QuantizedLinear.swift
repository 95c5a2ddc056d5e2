import CSupport

/// `output = input · x̂ᵀ` over a `QuantizedMatrix` weight, reading its blocks and never an f32
/// copy of it: each input row is quantized to int8 per block of 32 (one f32 scale a block, as
/// llama.cpp quantizes activations for its Q8_0 and Q4_0 dots), and each output is
/// Σ_blocks d_w · d_x · Σ q_w·q_x with the inner sums in integers (Sources/CSupport/quant.c).
///
///     input   [rowCount, inputSize]   f32
///     weight  [outputSize, inputSize] quantized (inputSize a multiple of 32)
///     output  [rowCount, outputSize]
///
/// Threads split the weight's rows; every (weight row, input row) pair is one call of the same
/// dot product, so an output does not depend on the thread count nor on the other rows of the
/// batch (batch invariance: a sequence gets the same logits alone or among 15 others). Each
/// weight row is read once for all input rows, from L1 after the first.
public enum QuantizedLinear {
    /// The kernel variant every product of this process uses (AVX2 where the CPU has it, else
    /// scalar), chosen once at start-up by cpuid.
    public static let variant = Variant(rawValue: meshlm_quant_best_variant()) ?? .scalar

    public enum Variant: Int32, Sendable, CaseIterable {
        case scalar = 0
        case avx2 = 1

        /// Whether this CPU runs it.
        public var isAvailable: Bool { rawValue <= meshlm_quant_best_variant() }
    }

    /// Room for the int8 codes and block scales of up to `rowCount` rows of `columnCount` inputs.
    public final class Scratch: @unchecked Sendable {
        public let rowCount: Int
        public let columnCount: Int
        let codes: UnsafeMutablePointer<Int8>
        let scales: UnsafeMutablePointer<Float>

        public init(rowCount: Int, columnCount: Int) {
            self.rowCount = rowCount
            self.columnCount = columnCount
            codes = .allocate(capacity: Swift.max(1, rowCount * columnCount))
            scales = .allocate(capacity: Swift.max(1, rowCount * columnCount / QuantizedFormat.blockSize))
        }

        deinit {
            codes.deallocate()
            scales.deallocate()
        }
    }

    public static func multiply(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: QuantizedMatrix,
                                rowCount: Int, scratch: Scratch, threads: KernelThreads = .single,
                                variant: Variant = QuantizedLinear.variant) {
        let inputSize = weight.columnCount
        precondition(rowCount <= scratch.rowCount && inputSize <= scratch.columnCount,
                     "scratch for \(scratch.rowCount)×\(scratch.columnCount) given \(rowCount)×\(inputSize)")
        precondition(variant.isAvailable, "the \(variant) quantized kernel does not run on this CPU")
        let blockCount = weight.blocksPerRow
        for row in 0..<rowCount {
            meshlm_quantize_activation_row(input + row * inputSize, Int64(inputSize),
                                           scratch.codes + row * inputSize, scratch.scales + row * blockCount)
        }
        let (codes, scales) = (scratch.codes, scratch.scales)
        threads.parallelFor(0..<weight.rowCount, minimumChunk: 16) { rows in
            meshlm_quant_dot_rows(variant.rawValue, weight.format.code, weight.blocks.assumingMemoryBound(to: UInt8.self),
                                  Int64(weight.rowBytes), Int64(rows.lowerBound), Int64(rows.count), Int64(blockCount),
                                  codes, scales, Int64(rowCount), output, Int64(weight.rowCount))
        }
    }
}
