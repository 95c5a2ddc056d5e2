import Foundation
import TensorComparison
import Testing
import Tensors

@Suite struct AttentionTests {
    init() { useSingleThreadedBLAS() }

    struct Run {
        var output: [Float], logSumExp: [Float], queryGradient: [Float], keyGradient: [Float], valueGradient: [Float]
    }

    /// Forward, then backward with output gradient `r` into gradients that start at the given
    /// values.
    func run(_ s: AttentionSizes, q: [Float], k: [Float], v: [Float], r: [Float],
             starts: (q: [Float], k: [Float], v: [Float]), tiling: AttentionTiling, threads: Int) -> Run {
        let lseCount = s.batch * s.heads * s.sequence
        let b = withBuffers([q, k, v, r, [Float](repeating: 0, count: q.count), [Float](repeating: 0, count: lseCount),
                             starts.q, starts.k, starts.v]) { p in
            let threads = KernelThreads(count: threads)
            Attention.forward(output: p[4], logSumExp: p[5], query: p[0], key: p[1], value: p[2],
                              batchSize: s.batch, sequenceLength: s.sequence, headCount: s.heads,
                              kvHeadCount: s.kvHeads, headDimension: s.headDimension, tiling: tiling, threads: threads)
            Attention.backward(queryGradient: p[6], keyGradient: p[7], valueGradient: p[8], outputGradient: p[3],
                               logSumExp: p[5], output: p[4], query: p[0], key: p[1], value: p[2],
                               batchSize: s.batch, sequenceLength: s.sequence, headCount: s.heads,
                               kvHeadCount: s.kvHeads, headDimension: s.headDimension, tiling: tiling, threads: threads)
        }
        return Run(output: b[4], logSumExp: b[5], queryGradient: added(b[6], over: starts.q),
                   keyGradient: added(b[7], over: starts.k), valueGradient: added(b[8], over: starts.v))
    }

    @Test func backwardMatchesFiniteDifferences() {
        // GQA (4 query heads on 2 KV heads), sequence 10 over tiles of 4 queries × 3 keys, head
        // dimension 20 (one vector and a tail).
        let s = AttentionSizes(batch: 1, sequence: 10, heads: 4, kvHeads: 2, headDimension: 20)
        let q = randomValues(s.queryCount, seed: 121, scale: 2), k = randomValues(s.kvCount, seed: 122, scale: 2)
        let v = randomValues(s.kvCount, seed: 123), r = randomValues(s.queryCount, seed: 124)
        let starts = (randomValues(q.count, seed: 125), randomValues(k.count, seed: 126), randomValues(v.count, seed: 127))
        let result = run(s, q: q, k: k, v: v, r: r, starts: starts,
                         tiling: AttentionTiling(queryTileSize: 4, keyTileSize: 3), threads: 1)
        let (dq, dk, dv, weights) = (doubles(q), doubles(k), doubles(v), doubles(r))
        func loss(_ q: [Double], _ k: [Double], _ v: [Double]) -> Double {
            weightedSum(attentionReference(q, k, v, s).output, weights)
        }
        let forwardDifference = maxRelativeDifference(result.output, attentionReference(dq, dk, dv, s).output)
        let checks = [
            ("query", result.queryGradient, finiteDifferences(at: dq) { loss($0, dk, dv) }),
            ("key", result.keyGradient, finiteDifferences(at: dk) { loss(dq, $0, dv) }),
            ("value", result.valueGradient, finiteDifferences(at: dv) { loss(dq, dk, $0) }),
        ]
        print("Attention forward (tiles 4×3) max rel diff", forwardDifference)
        #expect(forwardDifference <= 1e-5)
        let analytic = attentionBackwardReference(weights, dq, dk, dv, s)
        for ((name, gradient, expected), reference) in zip(checks, [analytic.dq, analytic.dk, analytic.dv]) {
            let difference = maxRelativeDifference(gradient, expected)
            // The analytic Double reference is itself checked here, so larger cases can use it.
            let referenceDifference = maxRelativeDifference(reference.map { Float($0) }, expected)
            print("Attention backward \(name) gradient max rel diff", difference, "(analytic reference vs FD", referenceDifference, ")")
            #expect(difference <= 1e-3)
            #expect(referenceDifference <= 1e-3)
        }
    }

    @Test(arguments: [
        AttentionTiling.default, AttentionTiling(queryTileSize: 16, keyTileSize: 16),
        AttentionTiling(queryTileSize: 32, keyTileSize: 16), AttentionTiling(queryTileSize: 16, keyTileSize: 32),
        AttentionTiling(queryTileSize: 7, keyTileSize: 5),
    ])
    func largerCaseMatchesReferenceAndThreadsAgree(tiling: AttentionTiling) {
        // Sequence 70: not a multiple of any tile; head dimension 32; batch 2; GQA 6 on 2.
        let s = AttentionSizes(batch: 2, sequence: 70, heads: 6, kvHeads: 2, headDimension: 32)
        let q = randomValues(s.queryCount, seed: 131, scale: 3), k = randomValues(s.kvCount, seed: 132, scale: 3)
        let v = randomValues(s.kvCount, seed: 133), r = randomValues(s.queryCount, seed: 134)
        let zeros = ([Float](repeating: 0, count: q.count), [Float](repeating: 0, count: k.count),
                     [Float](repeating: 0, count: v.count))
        let single = run(s, q: q, k: k, v: v, r: r, starts: zeros, tiling: tiling, threads: 1)
        let threaded = run(s, q: q, k: k, v: v, r: r, starts: zeros, tiling: tiling, threads: 3)
        let reference = attentionReference(doubles(q), doubles(k), doubles(v), s)
        let gradients = attentionBackwardReference(doubles(r), doubles(q), doubles(k), doubles(v), s)
        let differences = [
            maxRelativeDifference(single.output, reference.output),
            maxRelativeDifference(single.queryGradient, gradients.dq),
            maxRelativeDifference(single.keyGradient, gradients.dk),
            maxRelativeDifference(single.valueGradient, gradients.dv),
        ]
        print("Attention tiles \(tiling.queryTileSize)×\(tiling.keyTileSize) max rel diff output/dq/dk/dv", differences,
              "threads 3 vs 1:", TensorDifference(threaded.output, single.output))
        #expect(differences[0] <= 1e-5)
        #expect(differences[1...].allSatisfy { $0 <= 1e-4 })
        expectSameBits(threaded.output, single.output, "output, threads 3 vs 1")
        expectSameBits(threaded.logSumExp, single.logSumExp, "log-sum-exp, threads 3 vs 1")
        expectSameBits(threaded.queryGradient, single.queryGradient, "query gradient, threads 3 vs 1")
        expectSameBits(threaded.keyGradient, single.keyGradient, "key gradient, threads 3 vs 1")
        expectSameBits(threaded.valueGradient, single.valueGradient, "value gradient, threads 3 vs 1")
    }

    @Test func logSumExpIsTheSoftmaxNormalizer() {
        // Row t of head h: lse = log Σ_{u ≤ t} exp(q_t·k_u / √d).
        let s = AttentionSizes(batch: 1, sequence: 9, heads: 2, kvHeads: 1, headDimension: 16)
        let q = randomValues(s.queryCount, seed: 141, scale: 2), k = randomValues(s.kvCount, seed: 142, scale: 2)
        let v = randomValues(s.kvCount, seed: 143)
        let zeros = ([Float](repeating: 0, count: q.count), [Float](repeating: 0, count: k.count),
                     [Float](repeating: 0, count: v.count))
        let result = run(s, q: q, k: k, v: v, r: zeros.0, starts: zeros,
                         tiling: AttentionTiling(queryTileSize: 4, keyTileSize: 4), threads: 1)
        var expected = [Double]()
        for h in 0..<2 {
            for t in 0..<9 {
                let scores = (0...t).map { u in
                    (0..<16).reduce(0.0) { $0 + Double(q[s.q(0, t, h, $1)]) * Double(k[s.kv(0, u, 0, $1)]) } / 4
                }
                let maximum = scores.max() ?? 0
                expected.append(maximum + log(scores.reduce(0) { $0 + exp($1 - maximum) }))
            }
        }
        let difference = maxRelativeDifference(result.logSumExp, expected)
        print("Attention logSumExp max rel diff", difference)
        #expect(difference <= 1e-5)
    }
}
