import Foundation

// Naive Double implementations: straight loops, the whole attention matrix, no tiling. They are
// what the kernels are checked against, and what finite differences differentiate.

/// input [rows, inputSize] · weight[outputSize, inputSize]ᵀ + bias → [rows, outputSize]
func matmulReference(_ input: [Double], _ weight: [Double], _ bias: [Double]?,
                     rows: Int, inputSize: Int, outputSize: Int) -> [Double] {
    var output = [Double](repeating: 0, count: rows * outputSize)
    for r in 0..<rows {
        for o in 0..<outputSize {
            var sum = bias?[o] ?? 0
            for i in 0..<inputSize { sum += input[r * inputSize + i] * weight[o * inputSize + i] }
            output[r * outputSize + o] = sum
        }
    }
    return output
}

/// General row-major C = alpha·op(A)·op(B) + beta·C with explicit strides.
func gemmReference(_ c: [Double], ldc: Int, _ a: [Double], lda: Int, transposeA: Bool,
                   _ b: [Double], ldb: Int, transposeB: Bool,
                   m: Int, n: Int, k: Int, alpha: Double, beta: Double) -> [Double] {
    var result = c
    for i in 0..<m {
        for j in 0..<n {
            var sum = 0.0
            for l in 0..<k {
                let aValue = transposeA ? a[l * lda + i] : a[i * lda + l]
                let bValue = transposeB ? b[j * ldb + l] : b[l * ldb + j]
                sum += aValue * bValue
            }
            result[i * ldc + j] = alpha * sum + beta * c[i * ldc + j]
        }
    }
    return result
}

func embeddingReference(_ table: [Double], tokens: [Int32], hiddenSize: Int) -> [Double] {
    tokens.flatMap { token in table[Int(token) * hiddenSize..<(Int(token) + 1) * hiddenSize] }
}

func rmsNormReference(_ input: [Double], _ weight: [Double], rows: Int, hiddenSize: Int, epsilon: Double) -> [Double] {
    var output = input
    for r in 0..<rows {
        let row = input[r * hiddenSize..<(r + 1) * hiddenSize]
        let rstd = 1 / (row.reduce(0) { $0 + $1 * $1 } / Double(hiddenSize) + epsilon).squareRoot()
        for c in 0..<hiddenSize { output[r * hiddenSize + c] = input[r * hiddenSize + c] * rstd * weight[c] }
    }
    return output
}

/// transformers' default and llama3 inverse frequencies, in Double.
func ropeInverseFrequenciesReference(headDimension: Int, theta: Double,
                                     llama3 scaling: (factor: Double, low: Double, high: Double, original: Double)?) -> [Double] {
    let base = stride(from: 0, to: headDimension, by: 2).map { 1 / pow(theta, Double($0) / Double(headDimension)) }
    guard let scaling else { return base }
    let lowWavelength = scaling.original / scaling.low
    let highWavelength = scaling.original / scaling.high
    return base.map { frequency in
        let wavelength = 2 * Double.pi / frequency
        if wavelength < highWavelength { return frequency }
        if wavelength > lowWavelength { return frequency / scaling.factor }
        let smooth = (scaling.original / wavelength - scaling.low) / (scaling.high - scaling.low)
        return (1 - smooth) * frequency / scaling.factor + smooth * frequency
    }
}

/// HF `q * cos + rotate_half(q) * sin` with cos/sin of cat(freqs, freqs).
func ropeReference(_ input: [Double], positions: [Int32], inverseFrequencies: [Double],
                   tokens: Int, heads: Int, headDimension: Int) -> [Double] {
    let half = headDimension / 2
    var output = input
    for t in 0..<tokens {
        for h in 0..<heads {
            let base = (t * heads + h) * headDimension
            for d in 0..<headDimension {
                let angle = Double(positions[t]) * inverseFrequencies[d % half]
                let rotated = d < half ? -input[base + d + half] : input[base + d - half]
                output[base + d] = input[base + d] * cos(angle) + rotated * sin(angle)
            }
        }
    }
    return output
}

func swiGLUReference(_ gate: [Double], _ up: [Double]) -> [Double] {
    zip(gate, up).map { g, u in g / (1 + exp(-g)) * u }
}

/// Per-row losses (0 for ignored) and the mean over counted rows.
func crossEntropyReference(_ logits: [Double], targets: [Int32], vocabularySize: Int,
                           ignoreIndex: Int32 = -100) -> (losses: [Double], mean: Double) {
    var losses = [Double](repeating: 0, count: targets.count)
    var count = 0
    for (r, target) in targets.enumerated() where target != ignoreIndex {
        let row = logits[r * vocabularySize..<(r + 1) * vocabularySize]
        let maximum = row.max() ?? 0
        let logSumExp = maximum + log(row.reduce(0) { $0 + exp($1 - maximum) })
        losses[r] = logSumExp - logits[r * vocabularySize + Int(target)]
        count += 1
    }
    return (losses, count == 0 ? 0 : losses.reduce(0, +) / Double(count))
}

struct AttentionSizes {
    var batch, sequence, heads, kvHeads, headDimension: Int
    var queryCount: Int { batch * sequence * heads * headDimension }
    var kvCount: Int { batch * sequence * kvHeads * headDimension }
    func q(_ b: Int, _ t: Int, _ h: Int, _ d: Int) -> Int { ((b * sequence + t) * heads + h) * headDimension + d }
    func kv(_ b: Int, _ t: Int, _ h: Int, _ d: Int) -> Int { ((b * sequence + t) * kvHeads + h) * headDimension + d }
}

/// Causal GQA with the full score matrix per (batch, head). Returns output and probabilities
/// [batch, heads, sequence, sequence] (for the analytic backward reference).
func attentionReference(_ q: [Double], _ k: [Double], _ v: [Double], _ s: AttentionSizes)
    -> (output: [Double], probabilities: [Double]) {
    let scale = 1 / Double(s.headDimension).squareRoot()
    let group = s.heads / s.kvHeads
    var output = [Double](repeating: 0, count: s.queryCount)
    var probabilities = [Double](repeating: 0, count: s.batch * s.heads * s.sequence * s.sequence)
    for b in 0..<s.batch {
        for h in 0..<s.heads {
            let kvh = h / group
            for t in 0..<s.sequence {
                var scores = [Double](repeating: 0, count: t + 1)
                for u in 0...t {
                    var dot = 0.0
                    for d in 0..<s.headDimension { dot += q[s.q(b, t, h, d)] * k[s.kv(b, u, kvh, d)] }
                    scores[u] = dot * scale
                }
                let maximum = scores.max() ?? 0
                let weights = scores.map { exp($0 - maximum) }
                let sum = weights.reduce(0, +)
                for u in 0...t {
                    let p = weights[u] / sum
                    probabilities[((b * s.heads + h) * s.sequence + t) * s.sequence + u] = p
                    for d in 0..<s.headDimension { output[s.q(b, t, h, d)] += p * v[s.kv(b, u, kvh, d)] }
                }
            }
        }
    }
    return (output, probabilities)
}

/// The analytic gradients of `attentionReference` for output gradient `dO` (itself checked
/// against finite differences in AttentionTests).
func attentionBackwardReference(_ dO: [Double], _ q: [Double], _ k: [Double], _ v: [Double], _ s: AttentionSizes)
    -> (dq: [Double], dk: [Double], dv: [Double]) {
    let scale = 1 / Double(s.headDimension).squareRoot()
    let group = s.heads / s.kvHeads
    let probabilities = attentionReference(q, k, v, s).probabilities
    var dq = [Double](repeating: 0, count: s.queryCount)
    var dk = [Double](repeating: 0, count: s.kvCount)
    var dv = [Double](repeating: 0, count: s.kvCount)
    for b in 0..<s.batch {
        for h in 0..<s.heads {
            let kvh = h / group
            for t in 0..<s.sequence {
                let p = (0...t).map { probabilities[((b * s.heads + h) * s.sequence + t) * s.sequence + $0] }
                var dp = [Double](repeating: 0, count: t + 1)
                for u in 0...t {
                    for d in 0..<s.headDimension {
                        dv[s.kv(b, u, kvh, d)] += p[u] * dO[s.q(b, t, h, d)]
                        dp[u] += dO[s.q(b, t, h, d)] * v[s.kv(b, u, kvh, d)]
                    }
                }
                let weighted = zip(p, dp).reduce(0) { $0 + $1.0 * $1.1 }
                for u in 0...t {
                    let ds = p[u] * (dp[u] - weighted) * scale
                    for d in 0..<s.headDimension {
                        dq[s.q(b, t, h, d)] += ds * k[s.kv(b, u, kvh, d)]
                        dk[s.kv(b, u, kvh, d)] += ds * q[s.q(b, t, h, d)]
                    }
                }
            }
        }
    }
    return (dq, dk, dv)
}

/// torch.optim.AdamW's update, in Double.
func adamWReference(parameters: [Double], gradients: [Double], first: [Double], second: [Double], step: Int,
                    learningRate: Double, beta1: Double, beta2: Double, epsilon: Double, weightDecay: Double)
    -> (parameters: [Double], first: [Double], second: [Double]) {
    var p = parameters, m = first, v = second
    let correction1 = 1 - pow(beta1, Double(step)), correction2 = 1 - pow(beta2, Double(step))
    for i in p.indices {
        p[i] *= 1 - learningRate * weightDecay
        m[i] = beta1 * m[i] + (1 - beta1) * gradients[i]
        v[i] = beta2 * v[i] + (1 - beta2) * gradients[i] * gradients[i]
        p[i] -= learningRate / correction1 * m[i] / (v[i].squareRoot() / correction2.squareRoot() + epsilon)
    }
    return (p, m, v)
}
