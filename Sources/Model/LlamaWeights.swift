/// The head block's tensors: `model.norm.weight` [C], then (untied) `lm_head.weight` [V, C] or
/// (a scalar head) `score.weight` [labels, C]. Tied, lm_head is the embedding table and lives in
/// the embedding block.
struct HeadOffsets {
    let norm: Int
    let languageModelHead: Int?
    let score: Int?

    init(layout: ParameterLayout) {
        let start = layout.range(of: .head).lowerBound
        let entries = layout.entries(in: .head)
        guard let norm = entries.first(where: { $0.role == .finalNorm }) else { preconditionFailure("the layout has no model.norm.weight") }
        self.norm = norm.offset - start
        languageModelHead = entries.first { $0.role == .languageModelHead }.map { $0.offset - start }
        score = entries.first { $0.role == .score }.map { $0.offset - start }
    }
}
