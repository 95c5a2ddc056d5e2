import Foundation
import Model
import Tensors
import Testing

/// The whole model's backward against central differences of its fp32 forward, on a few sampled
/// elements of every tensor.
@Suite struct GradientCheckTests {
    init() { useSingleThreadedBLAS() }

    /// The loss sum (every token's ∂loss/∂log p = −1), and a weighted sum of log-probabilities
    /// with a weight per token — positive, negative and zero, as objectives give them.
    @Test(arguments: [(false, false, false), (true, true, false), (false, true, true)])
    func gradientsMatchFiniteDifferences(tied: Bool, documentMasking: Bool, weighted: Bool) {
        let config = tinyConfig(tied: tied)
        let (batchSize, sequenceLength) = (2, 7)
        let parameters = randomParameters(ParameterLayout(config: config), seed: 21)
        var batch = Batch(batchSize: batchSize, sequenceLength: sequenceLength, vocabularySize: config.vocabSize, seed: 22)
        batch.positions[sequenceLength + 3..<2 * sequenceLength] = [0, 1, 2, 3]
        let model = LlamaModel(config: config, microBatchSize: batchSize, sequenceLength: sequenceLength,
                               documentMasking: documentMasking)
        var generator = SplitMix64(seed: 24)
        let weights: [Float] = (0..<batchSize * sequenceLength).map { index in
            weighted ? (index % 5 == 2 ? 0 : Float(generator.next() % 2001) / 1000 - 1) : -1
        }
        // Gradients of the loss sum (lossScale 1): larger than the mean's, so fp32 rounding of the
        // loss matters less relative to them.
        model.forward(tokens: batch.tokens, targets: batch.targets, positions: batch.positions, parameters: parameters)
        if weighted {
            for index in weights.indices { model.logProbabilityGradient[index] = weights[index] }
            model.backward(parameters: parameters)
        } else {
            model.backward(lossScale: 1, parameters: parameters)
        }
        /// Σ wₜ · log pₜ (for w = −1: the loss sum).
        func lossSum() -> Double {
            model.forward(tokens: batch.tokens, targets: batch.targets, positions: batch.positions, parameters: parameters)
            return zip(model.tokenLogProbabilities, weights).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
        // Central differences at h and 2h, Richardson-extrapolated ((4·D(h) − D(2h)) / 3, error
        // O(h⁴)): the step can then be large enough that fp32 rounding of the loss stays ~1e-4 of
        // the gradient (plain central differences reach only ~2e-3 at their best step here).
        let step: Float = 1e-2
        var worst = (name: "", difference: 0.0)
        for entry in parameters.layout.entries {
            let analytic = parameters.gradientValues(of: entry)
            var generator = SplitMix64(seed: 23, stream: UInt64(entry.offset))
            // Four elements per tensor, and the largest gradient so each check measures something.
            var samples = (0..<4).map { _ in Int(generator.next() % UInt64(entry.count)) }
            samples.append(analytic.indices.max { abs(analytic[$0]) < abs(analytic[$1]) }!)
            var difference = 0.0, scale = 0.0
            for sample in samples {
                let pointer = parameters.parameters.pointer + entry.offset + sample
                let original = pointer.pointee
                func centralDifference(_ h: Float) -> Double {
                    pointer.pointee = original + h
                    let plus = lossSum()
                    pointer.pointee = original - h
                    let minus = lossSum()
                    pointer.pointee = original
                    // Divided by the step actually taken, after rounding to fp32.
                    return (plus - minus) / (Double(original + h) - Double(original - h))
                }
                let numeric = (4 * centralDifference(step) - centralDifference(2 * step)) / 3
                difference = max(difference, abs(numeric - Double(analytic[sample])))
                scale = max(scale, abs(Double(analytic[sample])))
            }
            // Relative to the tensor's largest gradient (always among the samples).
            let relative = difference / scale
            #expect(relative <= 1e-3, "\(entry.name): max |FD − analytic| \(difference) on gradients up to \(scale)")
            if relative > worst.difference { worst = (entry.name, relative) }
        }
        print("finite differences (tied \(tied), document masking \(documentMasking), weighted \(weighted)): max rel diff",
              worst.difference, "(\(worst.name))")
    }
}
