import Foundation
import Tensors

/// How a sparse layer routes one micro-batch's N tokens over its E experts, and the router's
/// losses (docs/moe.md):
///
///     p = softmax(router logits)                       [N, E], in f32 as transformers computes it
///     e_n1 … e_nk = the k largest p_n·                  ties: the lower expert first
///     w_nj = p_n,e_nj  (or / Σ_j p_n,e_nj with norm_topk_prob)
///     capacity = ceil(moe_capacity_factor · N · k / E): an expert routed more slots keeps its
///                most probable ones (ties: the earlier token), the others are dropped (w·0)
///
/// The kept slots are laid out in expert order — expert 0's tokens in token order, then expert
/// 1's … — so each expert's SwiGLU is one product over a contiguous block of rows (a grouped
/// GEMM), and the combine adds each token's slots back in slot order, so the result does not
/// depend on the thread count.
///
/// One instance per saved sparse layer, sized at init; routing allocates nothing but, with a
/// capacity, the candidate lists of the experts routed beyond it.
public final class ExpertRouting {
    public let tokenCount: Int
    public let expertCount: Int
    public let topK: Int
    public let normalizesTopK: Bool
    /// Slots an expert keeps per micro-batch; nil: dropless.
    public let capacity: Int?

    /// [N, E] router logits (the router product writes them here).
    public let logits: UnsafeMutablePointer<Float>
    /// [N, E] softmax of the logits.
    public let probabilities: UnsafeMutablePointer<Float>
    /// [N] logsumexp of each token's logits (the z-loss's argument).
    public let logSumExp: UnsafeMutablePointer<Float>
    /// [N, k] each slot's routing weight w (kept or dropped).
    public let weights: UnsafeMutablePointer<Float>
    /// [N, k] each slot's expert.
    public let selected: UnsafeMutablePointer<Int32>
    /// [N, k] each slot's row in expert order, or −1 when capacity dropped it.
    public let slotRows: UnsafeMutablePointer<Int32>
    /// [N·k] the slot (n·k + j) at each row of expert order (the first `keptCount` rows).
    public let order: UnsafeMutablePointer<Int32>
    /// [E + 1] each expert's first row in expert order; the last is `keptCount`.
    public private(set) var expertStarts: [Int]
    /// [E] slots routed to each expert before capacity (c_e: what the balancing loss counts).
    public private(set) var routedCounts: [Int]
    /// [E] Σ_n p_ne, summed in token order in Double (P_e: the balancing loss's other factor).
    public private(set) var probabilitySums: [Double]
    /// [E] the counting sort's next row of each expert.
    private var nextRows: [Int]

    private let floats: Tensor
    private let integers: UnsafeMutablePointer<Int32>

    public init(tokenCount: Int, expertCount: Int, topK: Int, normalizesTopK: Bool, capacityFactor: Double) {
        precondition(tokenCount >= 1 && (1...expertCount).contains(topK), "routing \(tokenCount) tokens to \(topK) of \(expertCount) experts")
        self.tokenCount = tokenCount
        self.expertCount = expertCount
        self.topK = topK
        self.normalizesTopK = normalizesTopK
        capacity = capacityFactor > 0
            ? Int((capacityFactor * Double(tokenCount * topK) / Double(expertCount)).rounded(.up)) : nil
        let (n, e, k) = (tokenCount, expertCount, topK)
        floats = Tensor(shape: [2 * n * e + n + n * k])
        logits = floats.pointer
        probabilities = logits + n * e
        logSumExp = probabilities + n * e
        weights = logSumExp + n
        integers = .allocate(capacity: 3 * n * k)
        integers.initialize(repeating: 0, count: 3 * n * k)
        selected = integers
        slotRows = integers + n * k
        order = integers + 2 * n * k
        expertStarts = Array(repeating: 0, count: e + 1)
        routedCounts = Array(repeating: 0, count: e)
        probabilitySums = Array(repeating: 0, count: e)
        nextRows = Array(repeating: 0, count: e)
    }

    deinit {
        integers.deallocate()
    }

    /// Slots kept (rows of expert order).
    public var keptCount: Int { expertStarts[expertCount] }
    /// Slots capacity dropped.
    public var droppedCount: Int { tokenCount * topK - keptCount }
    /// Expert `e`'s rows in expert order.
    public func rows(of expert: Int) -> Range<Int> { expertStarts[expert]..<expertStarts[expert + 1] }

    /// Routes the tokens whose logits are in `logits`.
    public func route(threads: KernelThreads = .single) {
        let (n, e, k) = (tokenCount, expertCount, topK)
        threads.parallelFor(0..<n, minimumChunk: 64) { tokens in
            for token in tokens {
                logSumExp[token] = Self.select(logits: logits + token * e, expertCount: e, topK: k, normalizesTopK: normalizesTopK,
                                               probabilities: probabilities + token * e, chosen: selected + token * k,
                                               weights: weights + token * k)
            }
        }
        for expert in 0..<e {
            routedCounts[expert] = 0
            probabilitySums[expert] = 0
        }
        for slot in 0..<n * k { routedCounts[Int(selected[slot])] += 1 }
        for token in 0..<n {
            for expert in 0..<e { probabilitySums[expert] += Double(probabilities[token * e + expert]) }
        }
        for slot in 0..<n * k { slotRows[slot] = 0 }
        if let capacity { dropBeyond(capacity) }
        // Counting sort of the kept slots by expert; token order within an expert.
        for expert in 0..<e { nextRows[expert] = 0 }
        for slot in 0..<n * k where slotRows[slot] >= 0 { nextRows[Int(selected[slot])] += 1 }
        expertStarts[0] = 0
        for expert in 0..<e {
            expertStarts[expert + 1] = expertStarts[expert] + nextRows[expert]
            nextRows[expert] = expertStarts[expert]
        }
        for slot in 0..<n * k where slotRows[slot] >= 0 {
            let expert = Int(selected[slot])
            order[nextRows[expert]] = Int32(slot)
            slotRows[slot] = Int32(nextRows[expert])
            nextRows[expert] += 1
        }
    }

    /// One token's routing: softmax of its E logits into `probabilities`, its top-k experts
    /// (descending p; ties: the lower expert) into `chosen` and their weights into `weights`.
    /// Returns the logits' logsumexp. The serving engine routes its rows with it too.
    public static func select(logits: UnsafePointer<Float>, expertCount e: Int, topK k: Int, normalizesTopK: Bool,
                              probabilities p: UnsafeMutablePointer<Float>, chosen: UnsafeMutablePointer<Int32>,
                              weights w: UnsafeMutablePointer<Float>) -> Float {
        var maximum = logits[0]
        for expert in 1..<e { maximum = Swift.max(maximum, logits[expert]) }
        var sum: Float = 0
        for expert in 0..<e {
            p[expert] = Foundation.exp(logits[expert] - maximum)
            sum += p[expert]
        }
        for expert in 0..<e { p[expert] /= sum }
        // Top-k by selection: the largest remaining p, the lower expert on ties.
        var total: Float = 0
        for slot in 0..<k {
            var best = -1
            for expert in 0..<e where !(0..<slot).contains(where: { chosen[$0] == Int32(expert) }) {
                if best < 0 || p[expert] > p[best] { best = expert }
            }
            chosen[slot] = Int32(best)
            w[slot] = p[best]
            total += p[best]
        }
        if normalizesTopK { for slot in 0..<k { w[slot] /= total } }
        return maximum + Foundation.log(sum)
    }

    /// Marks −1 in `slotRows` the slots beyond each expert's capacity: its least probable ones.
    private func dropBeyond(_ capacity: Int) {
        let (e, k) = (expertCount, topK)
        for expert in 0..<e where routedCounts[expert] > capacity {
            var slots: [Int] = []
            slots.reserveCapacity(routedCounts[expert])
            for slot in 0..<tokenCount * k where Int(selected[slot]) == expert { slots.append(slot) }
            let p = probabilities
            slots.sort { a, b in
                let (pa, pb) = (p[a / k * e + expert], p[b / k * e + expert])
                return pa != pb ? pa > pb : a < b
            }
            for slot in slots[capacity...] { slotRows[slot] = -1 }
        }
    }

    // MARK: Losses

    /// The Switch form of the load-balancing loss for this layer: E/(k·N²) · Σ_e c_e · P_e
    /// (1 when the slots and probabilities are spread evenly).
    public var switchBalanceLoss: Double {
        let n = Double(tokenCount)
        let loss = zip(routedCounts, probabilitySums).reduce(0.0) { $0 + Double($1.0) * $1.1 }
        return loss * Double(expertCount) / (Double(topK) * n * n)
    }

    /// ST-MoE's z-loss for this layer: the mean over tokens of logsumexp(logits)².
    public var zLoss: Double {
        var sum = 0.0
        for token in 0..<tokenCount { sum += Double(logSumExp[token]) * Double(logSumExp[token]) }
        return sum / Double(tokenCount)
    }

    /// The router logits' gradient [N, E] into `logitsGradient` (overwritten), from
    ///
    /// - `weightGradient` [N, k]: ∂loss/∂w of each slot (0 for a dropped one),
    /// - `balanceGradient` [E]: ∂(scaled balancing loss)/∂p_ne, the same for every token
    ///   (Switch: scale · coef · E·c_e/(k·N²); transformers': scale · coef · E·C_e/(L·N)²),
    /// - `zScale`: scale · z coefficient (∂/∂logit_ne = zScale · 2/N · lse_n · p_ne).
    public func backward(logitsGradient: UnsafeMutablePointer<Float>, weightGradient: UnsafePointer<Float>,
                         balanceGradient: [Float], zScale: Float, threads: KernelThreads = .single) {
        let (n, e, k) = (tokenCount, expertCount, topK)
        let zFactor = zScale * 2 / Float(n)
        balanceGradient.withUnsafeBufferPointer { balance in
            threads.parallelFor(0..<n, minimumChunk: 64) { tokens in
                for token in tokens {
                    let dp = logitsGradient + token * e, p = probabilities + token * e
                    for expert in 0..<e { dp[expert] = balance[expert] }
                    let chosen = selected + token * k, w = weights + token * k, dw = weightGradient + token * k
                    if normalizesTopK {
                        // w_j = p_j / s, s = Σ_j p_j: ∂/∂p_j = (dw_j − Σ_i dw_i·w_i) / s.
                        var total: Float = 0, weighted: Float = 0
                        for slot in 0..<k {
                            total += p[Int(chosen[slot])]
                            weighted += dw[slot] * w[slot]
                        }
                        for slot in 0..<k { dp[Int(chosen[slot])] += (dw[slot] - weighted) / total }
                    } else {
                        for slot in 0..<k { dp[Int(chosen[slot])] += dw[slot] }
                    }
                    // Softmax: ∂/∂logit_e = p_e·(dp_e − Σ_i p_i·dp_i); then the z-loss's term.
                    var dot: Float = 0
                    for expert in 0..<e { dot += p[expert] * dp[expert] }
                    let z = zFactor * logSumExp[token]
                    for expert in 0..<e { dp[expert] = p[expert] * (dp[expert] - dot + z) }
                }
            }
        }
    }
}
