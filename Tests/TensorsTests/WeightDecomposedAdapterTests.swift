import Tensors
import TensorComparison
import Testing

/// DoRA's kernels (`WeightDecomposedAdapter`, with `Matmul`, `LowRankAdapter` and
/// `AdapterDropout`) composed as `LlamaModel` runs one projection, against central differences
/// of a naive Double forward in which the row norm is held at its value (detached, as PEFT's):
/// the gradients of the input, A, B and the magnitude, without and with dropout.
@Suite struct WeightDecomposedAdapterTests {
    init() { useSingleThreadedBLAS() }

    @Test(arguments: [false, true])
    func gradientsMatchFiniteDifferencesWithTheNormDetached(dropout: Bool) {
        let (n, input, output, rank, scaling): (Int, Int, Int, Int, Float) = (6, 10, 7, 3, 2)
        let x = randomValues(n * input, seed: 1), w = randomValues(output * input, seed: 2, scale: 0.5)
        let a = randomValues(rank * input, seed: 3, scale: 0.4), b = randomValues(output * rank, seed: 4, scale: 0.4)
        let m = randomValues(output, seed: 5, scale: 0.5).map { $0 + 1.5 }
        let weights = randomValues(n * output, seed: 6)
        let (probability, key) = (Float(dropout ? 0.3 : 0), AdapterDropout.key(seed: 1, step: 2, layer: 3, projection: 4))
        var mask = [Float](repeating: 1, count: n * input)
        if dropout {
            AdapterDropout.forward(output: &mask, input: [Float](repeating: 1, count: n * input), key: key, probability: probability,
                                   firstToken: 0, firstColumn: 0, rowCount: n, columnCount: input)
        }
        let dropped = zip(x, mask).map { $0 * $1 }

        // Forward as the model runs it: V into the direction, its norms, then DoRA's output.
        var intermediate = [Float](repeating: 0, count: n * rank), direction = [Float](repeating: 0, count: n * output)
        var squaredNorms = [Float](repeating: 0, count: output), scale = [Float](repeating: 0, count: output)
        var scratch = [Float](repeating: 0, count: WeightDecomposedAdapter.rowBlock * input), y = [Float](repeating: 0, count: n * output)
        Matmul.forward(output: &direction, input: dropped, weight: w, bias: nil, rowCount: n, inputSize: input, outputSize: output)
        LowRankAdapter.forward(output: &direction, intermediate: &intermediate, input: dropped, a: a, b: b, scaling: scaling,
                               rowCount: n, inputSize: input, outputSize: output, rank: rank)
        WeightDecomposedAdapter.squaredRowNorms(squaredNorms: &squaredNorms, scratch: &scratch, weight: w, a: a, b: b, scaling: scaling,
                                                outputSize: output, inputSize: input, rank: rank)
        // The norms the naive forward holds (forward turns squaredNorms into their inverses).
        let norms = squaredNorms.map { Double($0).squareRoot() }
        WeightDecomposedAdapter.forward(output: &y, direction: &direction, scale: &scale, squaredNorms: &squaredNorms, magnitude: m,
                                        rowCount: n, outputSize: output)

        // Backward as the model runs it, with g = the loss weights.
        var dx = [Float](repeating: 0, count: n * input), da = [Float](repeating: 0, count: rank * input)
        var db = [Float](repeating: 0, count: output * rank), dm = [Float](repeating: 0, count: output)
        var scaled = [Float](repeating: 0, count: n * output), intermediateGradient = [Float](repeating: 0, count: n * rank)
        WeightDecomposedAdapter.backward(magnitudeGradient: &dm, scaledGradient: &scaled, outputGradient: weights, direction: direction,
                                         scale: scale, rowCount: n, outputSize: output)
        Matmul.backward(inputGradient: &dx, weightGradient: nil, biasGradient: nil, outputGradient: dropout ? weights : scaled,
                        input: x, weight: w, rowCount: n, inputSize: input, outputSize: output)
        var droppedGradient = [Float](repeating: 0, count: n * input)
        LowRankAdapter.backward(inputGradient: &droppedGradient, aGradient: &da, bGradient: &db, intermediateGradient: &intermediateGradient,
                                outputGradient: scaled, intermediate: intermediate, input: dropped, a: a, b: b, scaling: scaling,
                                rowCount: n, inputSize: input, outputSize: output, rank: rank)
        if dropout {
            for index in scaled.indices { scaled[index] -= weights[index] }
            Matmul.backward(inputGradient: &droppedGradient, weightGradient: nil, biasGradient: nil, outputGradient: scaled,
                            input: dropped, weight: w, rowCount: n, inputSize: input, outputSize: output)
            AdapterDropout.backward(inputGradient: &dx, outputGradient: droppedGradient, key: key, probability: probability,
                                    firstToken: 0, firstColumn: 0, rowCount: n, columnCount: input)
        } else {
            for index in dx.indices { dx[index] += droppedGradient[index] }
        }

        // y = x·Wᵀ − x̃·Wᵀ + m / norm ⊙ (x̃·Wᵀ + s·(x̃·Aᵀ)·Bᵀ), the norm held at its value above.
        func loss(x: [Double], a: [Double], b: [Double], m: [Double]) -> Double {
            var total = 0.0
            for row in 0..<n {
                let xRow = (0..<input).map { x[row * input + $0] }
                let droppedRow = (0..<input).map { xRow[$0] * Double(mask[row * input + $0]) }
                let low = (0..<rank).map { r in (0..<input).reduce(0.0) { $0 + droppedRow[$1] * a[r * input + $1] } }
                for column in 0..<output {
                    var base = 0.0, droppedBase = 0.0, adapter = 0.0
                    for j in 0..<input {
                        base += xRow[j] * Double(w[column * input + j])
                        droppedBase += droppedRow[j] * Double(w[column * input + j])
                    }
                    for r in 0..<rank { adapter += low[r] * b[column * rank + r] }
                    let value = base - droppedBase + m[column] / norms[column] * (droppedBase + Double(scaling) * adapter)
                    total += value * Double(weights[row * output + column])
                }
            }
            return total
        }
        let (xd, ad, bd, md) = (doubles(x), doubles(a), doubles(b), doubles(m))
        let label = dropout ? "DoRA + dropout" : "DoRA"
        for (name, analytic, numeric) in [
            ("input", dx, finiteDifferences(at: xd) { loss(x: $0, a: ad, b: bd, m: md) }),
            ("A", da, finiteDifferences(at: ad) { loss(x: xd, a: $0, b: bd, m: md) }),
            ("B", db, finiteDifferences(at: bd) { loss(x: xd, a: ad, b: $0, m: md) }),
            ("magnitude", dm, finiteDifferences(at: md) { loss(x: xd, a: ad, b: bd, m: $0) }),
        ] {
            let difference = maxRelativeDifference(analytic, numeric)
            print("\(label) kernels: \(name) gradient vs finite differences, max rel diff \(difference)")
            #expect(difference <= 1e-4, "\(label): \(name)")
        }
    }
}
