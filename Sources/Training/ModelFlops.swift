import Model
import Tensors

/// The floating-point operations one training step executes per token of a dense Llama model at
/// a sequence length: the numerator of MFU.
///
/// A multiply-add counts 2. Per token and layer, forward:
///
///     linear     2·(c·q + 2·c·k + q·c + 3·c·i)          q_proj, k_proj, v_proj, o_proj, gate, up, down
///                                                        (c hidden, q = heads·d, k = kv heads·d, i intermediate)
///     attention  4·heads·d·scores / T                   q·kᵀ and p·v over the score entries
///                                                        `Attention.forward` computes per (sequence, head)
///
/// plus 2·c·V for lm_head (also when tied to the embedding, which is then the same matrix). The
/// embedding lookup is a copy, not a product: no FLOPs. Backward counts twice the forward of each
/// product (an input gradient and a weight gradient for a linear layer; dV, dP, dQ, dK for
/// attention over the score entries `Attention.backward` visits), so a training step is
/// forward + backward ≈ 3 × forward.
///
/// Causal attention is counted as executed, not as T² nor as the exact triangle T(T+1)/2: the
/// kernel computes whole tiles up to the diagonal (keys past a query tile's last row are skipped,
/// the masked half of the diagonal tile is computed and thrown away), so at the default 64 × 64
/// tiles the score entries are T·(T + 64)/2 per head, not T².
///
/// Not counted, as MFU (PaLM, Megatron) does not count them: elementwise work (norms, RoPE,
/// SwiGLU, softmax, cross-entropy, AdamW); recomputation — `train.recompute` runs each layer's
/// forward again in backward (add `layerForwardPerToken`), and attention's backward recomputes
/// the score tile q·kᵀ (2·d per score entry) instead of storing probabilities. With
/// `train.document_masking` attention runs per document, so fewer scores are executed than this
/// count (which assumes sequences of the full length) holds; at T = 256–512 attention is a few
/// per cent of the total.
public struct ModelFlops: Sendable, Equatable {
    public let config: LlamaConfig
    public let sequenceLength: Int
    public let tiling: AttentionTiling

    public init(_ config: LlamaConfig, sequenceLength: Int, tiling: AttentionTiling = .default) {
        precondition(sequenceLength >= 1, "a sequence has at least one token, not \(sequenceLength)")
        self.config = config
        self.sequenceLength = sequenceLength
        self.tiling = tiling
    }

    /// Forward FLOPs per token of every layer's linear products (no lm_head).
    public var linearForwardPerToken: Double {
        let c = Double(config.hiddenSize), i = Double(config.intermediateSize)
        let q = Double(config.numAttentionHeads * config.headDim), k = Double(config.numKeyValueHeads * config.headDim)
        // A sparse layer runs its router and k experts per token (dropped slots still counted).
        let sparse = Double(config.sparseLayerCount), dense = Double(config.numHiddenLayers) - sparse
        let experts = Double(config.numExpertsPerTok) * 3 * c * Double(config.moeIntermediateSize) + c * Double(config.numLocalExperts)
            + (config.sharedExpertIntermediateSize > 0 ? 3 * c * Double(config.sharedExpertIntermediateSize) + c : 0)
        return Double(config.numHiddenLayers) * 2 * (c * q + 2 * c * k + q * c) + 2 * (dense * 3 * c * i + sparse * experts)
    }

    /// Forward FLOPs per token of lm_head.
    public var headForwardPerToken: Double { 2 * Double(config.hiddenSize * config.headWidth) }

    /// Forward FLOPs per token of every layer's attention score and value products, over the
    /// score entries the kernel computes.
    public var attentionForwardPerToken: Double {
        attentionPerToken(scores: Self.forwardScoreCount(sequenceLength: sequenceLength, tiling: tiling), productsPerScore: 2)
    }

    /// Backward FLOPs per token of attention: dV, dP, dQ and dK over the score entries the
    /// backward kernel visits (its recomputation of q·kᵀ is not counted).
    public var attentionBackwardPerToken: Double {
        attentionPerToken(scores: Self.backwardScoreCount(sequenceLength: sequenceLength, tiling: tiling), productsPerScore: 4)
    }

    /// One layer stack's forward per token (what `train.recompute` runs again in backward).
    public var layerForwardPerToken: Double { linearForwardPerToken + attentionForwardPerToken }

    /// The forward pass per token.
    public var forwardPerToken: Double { layerForwardPerToken + headForwardPerToken }

    /// Forward and backward per token of one training step: the MFU numerator.
    public var trainingPerToken: Double {
        3 * (linearForwardPerToken + headForwardPerToken) + attentionForwardPerToken + attentionBackwardPerToken
    }

    /// 6·N + 12·L·H·T (N every parameter, embedding included; attention as a full T × T): the
    /// usual estimate, which overcounts what MeshLM executes. For comparison with figures that
    /// use it.
    public var estimatePerToken: Double {
        6 * Double(config.activeParameterCount) + 12 * Double(config.numHiddenLayers * config.hiddenSize * sequenceLength)
    }

    private func attentionPerToken(scores: Int, productsPerScore: Double) -> Double {
        let perSequence = Double(config.numHiddenLayers * config.numAttentionHeads) * productsPerScore * 2 * Double(config.headDim) * Double(scores)
        return perSequence / Double(sequenceLength)
    }

    /// Score entries `Attention.forward` computes per (sequence, head): each query tile of `rows`
    /// rows starting at `queryStart` meets keys 0..<queryStart + rows.
    public static func forwardScoreCount(sequenceLength: Int, tiling: AttentionTiling) -> Int {
        stride(from: 0, to: sequenceLength, by: tiling.queryTileSize).reduce(0) { total, queryStart in
            let rows = min(tiling.queryTileSize, sequenceLength - queryStart)
            return total + rows * (queryStart + rows)
        }
    }

    /// Score entries `Attention.backward` visits per (sequence, head): each key tile meets every
    /// query tile from the one holding its first key to the end. Equal to the forward's when the
    /// tiles are square.
    public static func backwardScoreCount(sequenceLength: Int, tiling: AttentionTiling) -> Int {
        stride(from: 0, to: sequenceLength, by: tiling.keyTileSize).reduce(0) { total, keyStart in
            let columns = min(tiling.keyTileSize, sequenceLength - keyStart)
            let firstQuery = keyStart / tiling.queryTileSize * tiling.queryTileSize
            return total + columns * (sequenceLength - firstQuery)
        }
    }
}
