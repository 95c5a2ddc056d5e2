import Foundation
import Model
import Runtime

/// A mixture-of-experts model's routing figures over one step, as `metrics.jsonl` gets them
/// (docs/moe.md, "Metrics"): the router losses (before their coefficients) as means over the
/// global batch's micro-batches, the share of routed slots that capacity dropped, and each
/// sparse layer's load — slots per expert over the step, relative to the mean — summarized by
/// the extremes over layers.
struct RouterMetrics {
    static let names = ["moe_aux_loss", "moe_z_loss", "moe_dropped", "moe_load_min", "moe_load_max", "moe_load_cv"]

    /// Sparse layers of the whole model (global indices).
    let sparseLayers: [Int]
    let experts: Int
    let topK: Int

    init?(_ config: LlamaConfig) {
        guard config.hasExperts else { return nil }
        sparseLayers = (0..<config.numHiddenLayers).filter { config.isSparse(layer: $0) }
        experts = config.numLocalExperts
        topK = config.numExpertsPerTok
    }

    /// The step's figures from every model instance of this rank, summed over the pipeline's
    /// stages (each holds some layers) and the data-parallel group (each routed its own
    /// micro-batches); `microBatches` is the global batch's count.
    func reduce(_ totals: [RouterTotals], microBatches: Int, pipeline: Communicator?, data: Communicator) throws
        -> (metrics: [String: Double], loads: [Int: [Int]]) {
        var values = Array(repeating: 0.0, count: 4 + sparseLayers.count * experts)
        for total in totals {
            values[0] += total.balanceLoss
            values[1] += total.zLoss
            values[2] += Double(total.dropped)
            values[3] += Double(total.routed)
            for (index, layer) in sparseLayers.enumerated() {
                for (expert, count) in (total.routedCounts[layer] ?? []).enumerated() {
                    values[4 + index * experts + expert] += Double(count)
                }
            }
        }
        if let pipeline { try pipeline.allreduce(&values, .sum) }
        try data.allreduce(&values, .sum)
        var loads: [Int: [Int]] = [:]
        var (low, high, spread) = (Double.infinity, 0.0, 0.0)
        for (index, layer) in sparseLayers.enumerated() {
            let counts = (0..<experts).map { values[4 + index * experts + $0] }
            loads[layer] = counts.map { Int($0) }
            let mean = counts.reduce(0, +) / Double(experts)
            guard mean > 0 else { continue }
            let variance = counts.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(experts)
            low = min(low, (counts.min() ?? 0) / mean)
            high = max(high, (counts.max() ?? 0) / mean)
            spread = max(spread, variance.squareRoot() / mean)
        }
        let metrics = ["moe_aux_loss": values[0] / Double(microBatches), "moe_z_loss": values[1] / Double(microBatches),
                       "moe_dropped": values[3] > 0 ? values[2] / values[3] : 0,
                       "moe_load_min": low.isFinite ? low : 0, "moe_load_max": high, "moe_load_cv": spread]
        return (metrics, loads)
    }

    /// The experts that received at least 90 % of a layer's tokens over the step (a collapsed
    /// router), by layer; none when every token goes to every expert (k = E).
    func collapsed(_ loads: [Int: [Int]]) -> [(layer: Int, expert: Int, share: Double)] {
        guard topK < experts else { return [] }
        return loads.keys.sorted().compactMap { layer in
            guard let counts = loads[layer], let top = counts.indices.max(by: { counts[$0] < counts[$1] }) else { return nil }
            let tokens = Double(counts.reduce(0, +)) / Double(topK)
            let share = tokens > 0 ? Double(counts[top]) / tokens : 0
            return share >= 0.9 ? (layer, top, share) : nil
        }
    }
}
