import Foundation

/// Llama 3's `rope_scaling` (`rope_type: "llama3"`): long wavelengths are stretched by `factor`,
/// short ones kept, and the band between interpolated smoothly.
public struct RoPEScaling: Sendable, Equatable {
    public var factor: Float
    public var lowFrequencyFactor: Float
    public var highFrequencyFactor: Float
    public var originalMaxPositionEmbeddings: Int

    public init(factor: Float, lowFrequencyFactor: Float, highFrequencyFactor: Float,
                originalMaxPositionEmbeddings: Int) {
        self.factor = factor
        self.lowFrequencyFactor = lowFrequencyFactor
        self.highFrequencyFactor = highFrequencyFactor
        self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
    }
}

/// Precomputed cosines and sines of rotary position embeddings.
///
///     inverseFrequencies  [headDimension / 2]
///     cosines, sines      [positionCount, headDimension / 2]   angle = position · inverseFrequency
///
/// Computed the way transformers does in fp32 (`_compute_default_rope_parameters`,
/// `_compute_llama3_parameters`, then `position.float() * inv_freq`), so the angles carry the same
/// rounding as the reference models; only cos/sin themselves are evaluated in Double.
public final class RoPETable {
    public let headDimension: Int
    public let positionCount: Int
    public let inverseFrequencies: [Float]
    public let cosines: Tensor
    public let sines: Tensor

    /// - Parameters:
    ///   - theta: `rope_theta`, the base of the frequencies (10000 in Llama 2, 500000 in Llama 3).
    ///   - scaling: `rope_scaling` of type "llama3", or nil for plain RoPE.
    public init(headDimension: Int, positionCount: Int, theta: Float, scaling: RoPEScaling? = nil) {
        precondition(headDimension > 0 && headDimension % 2 == 0, "RoPE needs an even head dimension, not \(headDimension)")
        precondition(positionCount >= 0, "negative position count \(positionCount)")
        self.headDimension = headDimension
        self.positionCount = positionCount
        var frequencies = RoPETable.defaultInverseFrequencies(headDimension: headDimension, theta: theta)
        if let scaling {
            frequencies = RoPETable.llama3InverseFrequencies(frequencies, scaling: scaling)
        }
        inverseFrequencies = frequencies
        let half = headDimension / 2
        cosines = Tensor(shape: [positionCount, half])
        sines = Tensor(shape: [positionCount, half])
        for position in 0..<positionCount {
            for index in 0..<half {
                let angle = Double(Float(position) * frequencies[index])
                cosines.pointer[position * half + index] = Float(cos(angle))
                sines.pointer[position * half + index] = Float(sin(angle))
            }
        }
    }

    /// `1 / theta^(2i / d)` for i in 0..<d/2.
    static func defaultInverseFrequencies(headDimension: Int, theta: Float) -> [Float] {
        (0..<headDimension / 2).map { index in
            let exponent = Float(2 * index) / Float(headDimension)
            return 1 / Float(pow(Double(theta), Double(exponent)))
        }
    }

    /// transformers' `_compute_llama3_parameters`, step for step.
    static func llama3InverseFrequencies(_ frequencies: [Float], scaling: RoPEScaling) -> [Float] {
        let oldContextLength = Float(scaling.originalMaxPositionEmbeddings)
        let lowFrequencyWavelength = oldContextLength / scaling.lowFrequencyFactor
        let highFrequencyWavelength = oldContextLength / scaling.highFrequencyFactor
        return frequencies.map { frequency in
            let wavelength = 2 * Float.pi / frequency
            // Longer than the old context's low-frequency wavelength: stretch fully.
            let stretched = wavelength > lowFrequencyWavelength ? frequency / scaling.factor : frequency
            let isMedium = !(wavelength < highFrequencyWavelength) && !(wavelength > lowFrequencyWavelength)
            guard isMedium else { return stretched }
            let smooth = (oldContextLength / wavelength - scaling.lowFrequencyFactor)
                / (scaling.highFrequencyFactor - scaling.lowFrequencyFactor)
            return (1 - smooth) * stretched / scaling.factor + smooth * stretched
        }
    }
}

/// Rotary position embedding, Hugging Face Llama convention (`rotate_half`): within each head,
/// element i pairs with element i + d/2 and the pair turns by angle position · inverseFrequency[i].
///
///     input, output  [tokenCount, headCount, headDimension]   (output may be input)
///     positions      [tokenCount]   each token's position, so packed or offset sequences work
///
/// Apply it to queries and keys separately (keys with `headCount = kvHeadCount`).
public enum RoPE {
    /// `out₁ = x₁·cos − x₂·sin`, `out₂ = x₂·cos + x₁·sin`.
    public static func forward(
        output: UnsafeMutablePointer<Float>,
        input: UnsafePointer<Float>, positions: UnsafePointer<Int32>, table: RoPETable,
        tokenCount: Int, headCount: Int, headDimension: Int,
        threads: KernelThreads = .single
    ) {
        rotate(output, input, positions, table, tokenCount, headCount, headDimension, threads,
               inverse: false, accumulate: false)
    }

    /// The rotation is orthogonal, so the gradient turns back by the same angle:
    /// `inputGradient₁ += dy₁·cos + dy₂·sin`, `inputGradient₂ += dy₂·cos − dy₁·sin`.
    public static func backward(
        inputGradient: UnsafeMutablePointer<Float>,
        outputGradient: UnsafePointer<Float>, positions: UnsafePointer<Int32>, table: RoPETable,
        tokenCount: Int, headCount: Int, headDimension: Int,
        threads: KernelThreads = .single
    ) {
        rotate(inputGradient, outputGradient, positions, table, tokenCount, headCount, headDimension, threads,
               inverse: true, accumulate: true)
    }

    @inline(__always)
    static func rotate(
        _ output: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>,
        _ positions: UnsafePointer<Int32>, _ table: RoPETable,
        _ tokenCount: Int, _ headCount: Int, _ headDimension: Int, _ threads: KernelThreads,
        inverse: Bool, accumulate: Bool
    ) {
        precondition(headDimension == table.headDimension,
                     "head dimension \(headDimension) differs from the RoPE table's \(table.headDimension)")
        let half = headDimension / 2
        let cosines = UnsafePointer(table.cosines.pointer)
        let sines = UnsafePointer(table.sines.pointer)
        let positionCount = table.positionCount
        // The inverse rotation is the forward one with the sines negated.
        let sign: Float = inverse ? -1 : 1
        threads.parallelFor(0..<tokenCount, minimumChunk: 4) { tokens in
            for token in tokens {
                let position = Int(positions[token])
                precondition(position >= 0 && position < positionCount,
                             "position \(position) of token \(token) is outside the RoPE table's \(positionCount)")
                let c = cosines + position * half
                let s = sines + position * half
                for head in 0..<headCount {
                    let offset = (token * headCount + head) * headDimension
                    let x = input + offset
                    let y = output + offset
                    var index = 0
                    while index + Vector.width <= half {
                        let x1 = Vector.load(x + index), x2 = Vector.load(x + half + index)
                        let cosine = Vector.load(c + index), sine = sign * Vector.load(s + index)
                        var y1 = x1 * cosine - x2 * sine
                        var y2 = x2 * cosine + x1 * sine
                        if accumulate {
                            y1 += Vector.load(y + index)
                            y2 += Vector.load(y + half + index)
                        }
                        Vector.store(y1, y + index)
                        Vector.store(y2, y + half + index)
                        index += Vector.width
                    }
                    while index < half {
                        let x1 = x[index], x2 = x[half + index]
                        let cosine = c[index], sine = sign * s[index]
                        var y1 = x1 * cosine - x2 * sine
                        var y2 = x2 * cosine + x1 * sine
                        if accumulate {
                            y1 += y[index]
                            y2 += y[half + index]
                        }
                        y[index] = y1
                        y[half + index] = y2
                        index += 1
                    }
                }
            }
        }
    }
}
