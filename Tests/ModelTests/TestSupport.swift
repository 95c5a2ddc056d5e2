import Foundation
import Model
import Tensors
import TensorComparison

/// OpenBLAS must run one thread (see KernelThreads); set once for the whole test process.
let singleThreadedBLAS: Void = { BLASLibrary.threadCount = 1 }()

func useSingleThreadedBLAS() {
    _ = singleThreadedBLAS
}

/// A tiny GQA model with Llama-3 RoPE scaling; sizes off the 16-float vector width so every
/// kernel's scalar tail runs.
func tinyConfig(tied: Bool = false, layers: Int = 2, modelType: LlamaConfig.ModelType = .llama) -> LlamaConfig {
    LlamaConfig(vocabSize: 37, hiddenSize: 24, intermediateSize: 40, numHiddenLayers: layers, numAttentionHeads: 4,
                numKeyValueHeads: 2, maxPositionEmbeddings: 64, ropeTheta: 10_000,
                ropeScaling: RopeScaling(factor: 8, lowFreqFactor: 1, highFreqFactor: 4,
                                         originalMaxPositionEmbeddings: 32),
                tieWordEmbeddings: tied, modelType: modelType)
}

/// Parameters far from the 0.02 initialization, so every gradient is well away from zero:
/// matrices and biases N(0, scale²), norm weights 1 + N(0, 0.1²), each tensor from its own stream.
func randomParameters(_ layout: ParameterLayout, seed: UInt64, scale: Float = 0.3) -> ArenaParameters {
    let parameters = ArenaParameters(layout: layout)
    for (index, entry) in layout.entries.enumerated() {
        var generator = SplitMix64(seed: seed, stream: UInt64(index))
        for element in 0..<entry.count {
            let noise = generator.nextNormal()
            parameters.parameters.pointer[entry.offset + element] = entry.role.isNorm ? 1 + 0.1 * noise : scale * noise
        }
    }
    return parameters
}

/// A batch of inputs: random tokens, next-token targets (the last one and a few others
/// ignored), positions 0..<T in every row.
struct Batch {
    var tokens: [Int32]
    var targets: [Int32]
    var positions: [Int32]

    init(batchSize: Int, sequenceLength: Int, vocabularySize: Int, seed: UInt64) {
        var generator = SplitMix64(seed: seed)
        let count = batchSize * sequenceLength
        tokens = (0..<count).map { _ in Int32(generator.next() % UInt64(vocabularySize)) }
        targets = (0..<count).map { index in
            let position = index % sequenceLength
            if position == sequenceLength - 1 || index % 5 == 2 { return CrossEntropy.defaultIgnoreIndex }
            return Int32(generator.next() % UInt64(vocabularySize))
        }
        positions = (0..<count).map { Int32($0 % sequenceLength) }
    }
}

/// max|a − b| / max|b|: the largest error relative to the reference's scale (`TensorDifference`).
func maxRelativeDifference(_ actual: some Collection<Float>, _ expected: some Collection<Float>) -> Double {
    precondition(actual.count == expected.count, "\(actual.count) values vs \(expected.count) expected")
    return TensorDifference(actual, expected).relativeDifference
}

extension ArenaParameters {
    func values(of entry: ParameterLayout.Entry) -> [Float] {
        Array(UnsafeBufferPointer(start: parameters.pointer + entry.offset, count: entry.count))
    }

    func gradientValues(of entry: ParameterLayout.Entry) -> [Float] {
        Array(UnsafeBufferPointer(start: gradients.pointer + entry.offset, count: entry.count))
    }

    func copy() -> ArenaParameters {
        let copy = ArenaParameters(layout: layout)
        copy.parameters.pointer.update(from: parameters.pointer, count: layout.count)
        copy.gradients.pointer.update(from: gradients.pointer, count: layout.count)
        return copy
    }
}

/// Forward and backward of the mean loss; returns the loss total.
@discardableResult
func step(_ model: LlamaModel, _ batch: Batch, _ parameters: ArenaParameters) -> CrossEntropy.Total {
    let total = model.forward(tokens: batch.tokens, targets: batch.targets, positions: batch.positions,
                              parameters: parameters)
    model.backward(lossScale: 1 / Float(total.targetCount), parameters: parameters)
    return total
}

/// ∂loss/∂(the float at `pointer`) by central differences at h and 2h, Richardson-extrapolated
/// ((4·D(h) − D(2h)) / 3, error O(h⁴)), each divided by the step actually taken after rounding
/// to fp32; `loss` runs a forward with the current parameters. The value is restored.
func richardsonDifference(at pointer: UnsafeMutablePointer<Float>, step: Float, loss: () -> Double) -> Double {
    let original = pointer.pointee
    func central(_ h: Float) -> Double {
        pointer.pointee = original + h
        let plus = loss()
        pointer.pointee = original - h
        let minus = loss()
        pointer.pointee = original
        return (plus - minus) / (Double(original + h) - Double(original - h))
    }
    return (4 * central(step) - central(2 * step)) / 3
}
