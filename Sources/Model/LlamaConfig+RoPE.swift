import Tensors

extension RoPETable {
    /// The rotary table of a Llama config: `head_dim`, `rope_theta` and Llama-3 `rope_scaling`,
    /// for positions up to `max_position_embeddings` (positions within a document may exceed the
    /// sequence length when a document continues from an earlier row). Training and inference
    /// build it the same way.
    public convenience init(config: LlamaConfig) {
        let scaling = config.ropeScaling.map {
            RoPEScaling(factor: Float($0.factor), lowFrequencyFactor: Float($0.lowFreqFactor),
                        highFrequencyFactor: Float($0.highFreqFactor),
                        originalMaxPositionEmbeddings: $0.originalMaxPositionEmbeddings)
        }
        self.init(headDimension: config.headDim, positionCount: config.maxPositionEmbeddings,
                  theta: Float(config.ropeTheta), scaling: scaling)
    }
}
