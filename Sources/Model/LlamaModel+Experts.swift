import Foundation
import Tensors

/// What the sparse layers of `LlamaModel` compute for one micro-batch, beside `LlamaActivations`:
/// each saved sparse layer's routing and expert activations, and the scratch their backward
/// works in. With A = N·k slots, I_e = moe_intermediate_size, S = the sparse layers held (1 with
/// recomputation or forward-only):
///
///     saved, per sparse layer   routing (N·(2E + 1 + k) floats, 3·N·k Int32), gate, up and
///                               silu(gate)·up [A, I_e], the experts' outputs [A, C]; with a
///                               shared expert (I_s wide) its gate, up, activation [N, I_s],
///                               output [N, C] and gate logit [N]
///     scratch                   the gathered inputs [A, C]; training: their gradient and the
///                               outputs' [A, C] each, gate/up/activation gradients [A, I_e],
///                               the router logits' gradient [N, E] and the weights' [A]; the
///                               shared expert's gradients as its saved views
final class ExpertActivations {
    struct Layer {
        let routing: ExpertRouting
        /// [A, I_e] each expert's gate and up products over its rows, and silu(gate)·up.
        let gate, up, activation: UnsafeMutablePointer<Float>
        /// [A, C] each expert's down product: the slot's output before its weight.
        let output: UnsafeMutablePointer<Float>
        /// The shared expert's (empty without one): [N, I_s] gate, up, silu(gate)·up; [N, C] its
        /// down product; [N] its gate's logit.
        let shared: SharedActivations
    }

    /// A shared expert's views, saved (forward) or their gradients (backward scratch).
    struct SharedActivations {
        let gate, up, activation, output, scale: UnsafeMutablePointer<Float>
    }

    /// One sparse layer's routing figures of the last forward (kept per layer even when the
    /// routing itself is recomputed).
    struct Figures {
        var routedCounts: [Int]
        var probabilitySums: [Double]
        var dropped = 0
        var zLoss = 0.0
        var switchLoss = 0.0
    }

    /// The saved set of each local layer with experts (nil for a dense one).
    private let savedIndex: [Int?]
    private let saved: [Layer]
    /// By local layer (nil for a dense one).
    var figures: [Figures?]
    let arena: Tensor
    /// [A, C] the slots' gathered inputs (forward and backward), and (training) their gradient
    /// and the gradient of the slots' outputs.
    let input, inputGradient, outputGradient: UnsafeMutablePointer<Float>
    /// [A, I_e] gradients of silu(gate)·up, gate and up.
    let activationGradient, gateGradient, upGradient: UnsafeMutablePointer<Float>
    /// [N, E] the router logits' gradient; [A] the routing weights' (slot order).
    let logitsGradient, weightGradient: UnsafeMutablePointer<Float>
    /// The shared expert's gradients (training; empty without one).
    let sharedGradients: SharedActivations

    /// Floats of the arena for these sizes (the routing's own buffers aside).
    static func elementCount(config: LlamaConfig, tokenCount n: Int, sparseLayers: Int, recompute: Bool, forwardOnly: Bool) -> Int {
        guard sparseLayers > 0 else { return 0 }
        let (c, i, e, k) = (config.hiddenSize, config.moeIntermediateSize, config.numLocalExperts, config.numExpertsPerTok)
        let slots = n * k
        let savedCount = recompute || forwardOnly ? 1 : sparseLayers
        let routing = n * (2 * e + 1 + k)
        let training = forwardOnly ? 0 : 1
        let shared = n * (3 * config.sharedExpertIntermediateSize + c + 1) * (config.sharedExpertIntermediateSize > 0 ? 1 : 0)
        return savedCount * (slots * (3 * i + c) + routing + shared) + slots * c
            + training * (2 * slots * c + 3 * slots * i + n * e + slots + shared)
    }

    /// Nil when none of `layers` has experts.
    init?(config: LlamaConfig, tokenCount n: Int, layers: Range<Int>, recompute: Bool, forwardOnly: Bool) {
        let sparse = layers.filter { config.isSparse(layer: $0) }
        guard !sparse.isEmpty else { return nil }
        let (c, i, k) = (config.hiddenSize, config.moeIntermediateSize, config.numExpertsPerTok)
        let slots = n * k
        let savedCount = recompute || forwardOnly ? 1 : sparse.count
        var index = 0
        savedIndex = layers.map { layer in
            guard config.isSparse(layer: layer) else { return nil }
            defer { index += 1 }
            return savedCount == 1 ? 0 : index
        }
        // The routing keeps its own buffers; the arena holds the rest.
        arena = Tensor(shape: [ExpertActivations.elementCount(config: config, tokenCount: n, sparseLayers: sparse.count,
                                                              recompute: recompute, forwardOnly: forwardOnly)
                               - savedCount * n * (2 * config.numLocalExperts + 1 + k)])
        var next = arena.pointer
        func take(_ size: Int) -> UnsafeMutablePointer<Float> {
            defer { next += size }
            return next
        }
        let sharedWidth = config.sharedExpertIntermediateSize, hasShared = sharedWidth > 0 ? 1 : 0
        func sharedViews(_ present: Int) -> SharedActivations {
            SharedActivations(gate: take(present * n * sharedWidth), up: take(present * n * sharedWidth),
                              activation: take(present * n * sharedWidth), output: take(present * n * c), scale: take(present * n))
        }
        saved = (0..<savedCount).map { _ in
            Layer(routing: ExpertRouting(tokenCount: n, expertCount: config.numLocalExperts, topK: k,
                                         normalizesTopK: config.normTopkProb, capacityFactor: config.moeCapacityFactor),
                  gate: take(slots * i), up: take(slots * i), activation: take(slots * i), output: take(slots * c),
                  shared: sharedViews(hasShared))
        }
        let g = forwardOnly ? 0 : 1
        sharedGradients = sharedViews(g * hasShared)
        input = take(slots * c)
        inputGradient = take(g * slots * c)
        outputGradient = take(g * slots * c)
        activationGradient = take(g * slots * i)
        gateGradient = take(g * slots * i)
        upGradient = take(g * slots * i)
        logitsGradient = take(g * n * config.numLocalExperts)
        weightGradient = take(g * slots)
        precondition(next - arena.pointer == arena.count, "expert views cover \(next - arena.pointer) of \(arena.count) floats")
        figures = layers.map { config.isSparse(layer: $0) ? Figures(routedCounts: [], probabilitySums: []) : nil }
    }

    /// Every saved layer's routing decisions (experts chosen and rows kept), for tests that must
    /// know whether a perturbation changed them.
    var routingDecisions: [Int32] {
        saved.flatMap { layer in
            let r = layer.routing
            return Array(UnsafeBufferPointer(start: r.selected, count: r.tokenCount * r.topK))
                + Array(UnsafeBufferPointer(start: r.slotRows, count: r.tokenCount * r.topK))
        }
    }

    /// The saved set of local layer `layer` (a sparse one).
    func layer(_ layer: Int) -> Layer {
        guard let index = savedIndex[layer] else { preconditionFailure("layer \(layer) has no experts") }
        return saved[index]
    }
}

/// The router's figures of a model's last forward, over the sparse layers it holds.
public struct RouterFigures: Sendable, Equatable {
    /// The load-balancing loss (before its coefficient), in the config's form.
    public var balanceLoss: Double
    /// Σ over layers of the z-loss (before its coefficient).
    public var zLoss: Double
    /// By sparse layer (global index): slots routed to each expert before capacity.
    public var routedCounts: [Int: [Int]]
    /// Slots capacity dropped, and slots routed, over the layers.
    public var dropped: Int
    public var routed: Int
}

/// Sums of `RouterFigures` over forwards (the trainer's step: every micro-batch's forward,
/// not the recomputations inside backward).
public struct RouterTotals: Sendable, Equatable {
    public var balanceLoss = 0.0
    public var zLoss = 0.0
    public var dropped = 0
    public var routed = 0
    /// By sparse layer (global index), by expert.
    public var routedCounts: [Int: [Int]] = [:]

    public init() {}

    mutating func add(_ figures: RouterFigures) {
        balanceLoss += figures.balanceLoss
        zLoss += figures.zLoss
        dropped += figures.dropped
        routed += figures.routed
        for (layer, counts) in figures.routedCounts {
            routedCounts[layer] = zip(routedCounts[layer] ?? Array(repeating: 0, count: counts.count), counts).map { $0 + $1 }
        }
    }
}

extension LlamaModel {
    /// The router's figures of the last forward (nil for a dense model or part).
    public var routerFigures: RouterFigures? {
        guard let experts = expertActivations else { return nil }
        var counts: [Int: [Int]] = [:]
        var figures = RouterFigures(balanceLoss: 0, zLoss: 0, routedCounts: [:], dropped: 0, routed: 0)
        for (local, layer) in part.layers.enumerated() {
            guard let f = experts.figures[local] else { continue }
            counts[layer] = f.routedCounts
            figures.zLoss += f.zLoss
            figures.dropped += f.dropped
            figures.routed += tokenCount * config.numExpertsPerTok
            if config.routerAuxLossType == .switch { figures.balanceLoss += f.switchLoss }
        }
        figures.routedCounts = counts
        if config.routerAuxLossType == .hf, let (total, probability) = pooledRouting() {
            // E · Σ_e (C_e / LN) · (P_e / LN) over every sparse layer's tokens together.
            let rows = Double(counts.count * tokenCount)
            figures.balanceLoss = Double(config.numLocalExperts)
                * zip(total, probability).reduce(0) { $0 + Double($1.0) / rows * $1.1 / rows }
        }
        return figures
    }

    /// Σ over the sparse layers of the routed counts and probability sums per expert.
    private func pooledRouting() -> ([Int], [Double])? {
        guard let experts = expertActivations else { return nil }
        var counts = Array(repeating: 0, count: config.numLocalExperts)
        var probabilities = Array(repeating: 0.0, count: config.numLocalExperts)
        for case let f? in experts.figures where !f.routedCounts.isEmpty {
            for e in counts.indices {
                counts[e] += f.routedCounts[e]
                probabilities[e] += f.probabilitySums[e]
            }
        }
        return (counts, probabilities)
    }

    /// ∂(routerLossScale · coef · balance loss)/∂p_ne of local layer `layer`, by expert.
    func balanceGradient(layer: Int) -> [Float] {
        guard let experts = expertActivations, let f = experts.figures[layer] else { preconditionFailure("layer \(layer) has no experts") }
        let (e, k, n) = (Double(config.numLocalExperts), Double(config.numExpertsPerTok), Double(tokenCount))
        let scale = Double(routerLossScale) * config.routerAuxLossCoef
        switch config.routerAuxLossType {
        case .switch:
            return f.routedCounts.map { Float(scale * e * Double($0) / (k * n * n)) }
        case .hf:
            let sparseLayers = Double(experts.figures.count { $0 != nil })
            let total = pooledRouting()?.0 ?? []
            return total.map { Float(scale * e * Double($0) / ((sparseLayers * n) * (sparseLayers * n))) }
        }
    }

    /// A sparse layer's MLP backward: `gatheredStreamGradient()` holds ∂loss/∂(its output); the
    /// gradient of its normalized input is left in `normGradient` (overwritten).
    func expertBackward(_ layer: Int, _ w: ExpertWeights, _ g: ExpertTensors<UnsafeMutablePointer<Float>?>) {
        guard let experts = expertActivations else { preconditionFailure("layer \(layer) has no experts") }
        let s = experts.layer(layer)
        let routing = s.routing
        let saved = activations.layer(layer)
        let (n, c, i, k) = (tokenCount, config.hiddenSize, config.moeIntermediateSize, config.numExpertsPerTok)
        let kept = routing.keptCount
        let dy = UnsafePointer(gatheredStreamGradient())
        // Each kept slot's output gradient w·dy_n, and its weight's gradient ⟨dy_n, output⟩.
        let dOutput = experts.outputGradient, dWeight = experts.weightGradient
        zero(dWeight, n * k)
        timed(.experts, .backward) {
            threads.parallelFor(0..<kept, minimumChunk: 16) { rows in
                for row in rows {
                    let slot = Int(routing.order[row])
                    let source = dy + slot / k * c, out = s.output + row * c, target = dOutput + row * c
                    let weight = routing.weights[slot]
                    var dot: Float = 0
                    for column in 0..<c {
                        target[column] = weight * source[column]
                        dot += source[column] * out[column]
                    }
                    dWeight[slot] = dot
                }
            }
        }
        zero(experts.activationGradient, kept * i)
        for expert in 0..<routing.expertCount {
            let rows = routing.rows(of: expert)
            guard !rows.isEmpty else { continue }
            timed(.matmul, .backward) {
                Matmul.backward(inputGradient: experts.activationGradient + rows.lowerBound * i, weightGradient: g.down[expert],
                                biasGradient: nil, outputGradient: dOutput + rows.lowerBound * c,
                                input: s.activation + rows.lowerBound * i, weight: w.down[expert],
                                rowCount: rows.count, inputSize: i, outputSize: c, threads: threads)
            }
        }
        zero(experts.gateGradient, kept * i)
        zero(experts.upGradient, kept * i)
        timed(.swiglu, .backward) {
            SwiGLU.backward(gateGradient: experts.gateGradient, upGradient: experts.upGradient,
                            outputGradient: experts.activationGradient, gate: s.gate, up: s.up, count: kept * i, threads: threads)
        }
        gatherExpertInputs(routing, from: saved.mlpNorm, into: experts.input)
        zero(experts.inputGradient, kept * c)
        for expert in 0..<routing.expertCount {
            let rows = routing.rows(of: expert)
            guard !rows.isEmpty else { continue }
            let (input, inputGradient) = (experts.input + rows.lowerBound * c, experts.inputGradient + rows.lowerBound * c)
            timed(.matmul, .backward) {
                Matmul.backward(inputGradient: inputGradient, weightGradient: g.gate[expert], biasGradient: nil,
                                outputGradient: experts.gateGradient + rows.lowerBound * i, input: input, weight: w.gate[expert],
                                rowCount: rows.count, inputSize: c, outputSize: i, threads: threads)
                Matmul.backward(inputGradient: inputGradient, weightGradient: g.up[expert], biasGradient: nil,
                                outputGradient: experts.upGradient + rows.lowerBound * i, input: input, weight: w.up[expert],
                                rowCount: rows.count, inputSize: c, outputSize: i, threads: threads)
            }
        }
        // Each token's input gradient: its kept slots' in slot order (the same bits for any
        // thread count), then the router's.
        let normGradient = activations.normGradient
        timed(.experts, .backward) {
            threads.parallelFor(0..<n, minimumChunk: 16) { tokens in
                for token in tokens {
                    let target = normGradient + token * c
                    target.update(repeating: 0, count: c)
                    for slot in token * k..<(token + 1) * k where routing.slotRows[slot] >= 0 {
                        let source = experts.inputGradient + Int(routing.slotRows[slot]) * c
                        for column in 0..<c { target[column] += source[column] }
                    }
                }
            }
        }
        if let shared = w.shared, let sharedGradients = g.shared {
            sharedExpertBackward(s.shared, experts.sharedGradients, shared, sharedGradients, input: saved.mlpNorm,
                                 outputGradient: dy, inputGradient: normGradient)
        }
        timed(.experts, .backward) {
            routing.backward(logitsGradient: experts.logitsGradient, weightGradient: dWeight,
                             balanceGradient: balanceGradient(layer: layer),
                             zScale: routerLossScale * Float(config.routerZLossCoef), threads: threads)
        }
        timed(.matmul, .backward) {
            Matmul.backward(inputGradient: normGradient, weightGradient: g.router, biasGradient: nil,
                            outputGradient: experts.logitsGradient, input: saved.mlpNorm, weight: w.router,
                            rowCount: n, inputSize: c, outputSize: routing.expertCount, threads: threads)
        }
    }

    /// The shared expert's backward: from dy [N, C] (its output is σ(x·g)·down(silu(gate)·up)),
    /// its weights' gradients, and its input gradient added to `inputGradient` [N, C].
    func sharedExpertBackward(_ s: ExpertActivations.SharedActivations, _ d: ExpertActivations.SharedActivations,
                              _ w: SharedExpert<UnsafeMutablePointer<Float>>, _ g: SharedExpert<UnsafeMutablePointer<Float>?>,
                              input: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                              inputGradient: UnsafeMutablePointer<Float>) {
        let (n, c, i) = (tokenCount, config.hiddenSize, config.sharedExpertIntermediateSize)
        // ∂/∂output = σ·dy; ∂/∂logit = σ(1 − σ)·⟨dy, output⟩.
        timed(.experts, .backward) {
            threads.parallelFor(0..<n, minimumChunk: 16) { tokens in
                for token in tokens {
                    let sigma = 1 / (1 + Foundation.exp(-s.scale[token]))
                    let source = dy + token * c, out = s.output + token * c, target = d.output + token * c
                    var dot: Float = 0
                    for column in 0..<c {
                        target[column] = sigma * source[column]
                        dot += source[column] * out[column]
                    }
                    d.scale[token] = sigma * (1 - sigma) * dot
                }
            }
        }
        zero(d.activation, n * i)
        timed(.matmul, .backward) {
            Matmul.backward(inputGradient: d.activation, weightGradient: g.down, biasGradient: nil, outputGradient: d.output,
                            input: s.activation, weight: w.down, rowCount: n, inputSize: i, outputSize: c, threads: threads)
        }
        zero(d.gate, n * i)
        zero(d.up, n * i)
        timed(.swiglu, .backward) {
            SwiGLU.backward(gateGradient: d.gate, upGradient: d.up, outputGradient: d.activation, gate: s.gate, up: s.up,
                            count: n * i, threads: threads)
        }
        timed(.matmul, .backward) {
            Matmul.backward(inputGradient: inputGradient, weightGradient: g.gate, biasGradient: nil, outputGradient: d.gate,
                            input: input, weight: w.gate, rowCount: n, inputSize: c, outputSize: i, threads: threads)
            Matmul.backward(inputGradient: inputGradient, weightGradient: g.up, biasGradient: nil, outputGradient: d.up,
                            input: input, weight: w.up, rowCount: n, inputSize: c, outputSize: i, threads: threads)
            Matmul.backward(inputGradient: inputGradient, weightGradient: g.scale, biasGradient: nil, outputGradient: d.scale,
                            input: input, weight: w.scale, rowCount: n, inputSize: c, outputSize: 1, threads: threads)
        }
    }

    /// Copies each kept slot's token row of `source` [N, C] to its row of expert order in
    /// `destination` [A, C].
    func gatherExpertInputs(_ routing: ExpertRouting, from source: UnsafePointer<Float>, into destination: UnsafeMutablePointer<Float>) {
        let (c, k) = (config.hiddenSize, routing.topK)
        timed(.experts, .forward) {
            threads.parallelFor(0..<routing.keptCount, minimumChunk: 64) { rows in
                for row in rows {
                    (destination + row * c).update(from: source + Int(routing.order[row]) / k * c, count: c)
                }
            }
        }
    }
}

extension TrainingLayerKernels {
    func mixExperts(_ w: ExpertWeights) {
        guard let experts = model.expertActivations else { preconditionFailure("layer \(layer) has no experts") }
        let s = experts.layer(layer)
        let routing = s.routing
        let config = model.config
        let threads = model.threads
        let (n, c, i, e, k) = (model.tokenCount, config.hiddenSize, config.moeIntermediateSize, routing.expertCount, routing.topK)
        model.timed(.matmul, .forward) {
            Matmul.forward(output: routing.logits, input: saved.mlpNorm, weight: w.router, bias: nil,
                           rowCount: n, inputSize: c, outputSize: e, threads: threads)
        }
        model.timed(.experts, .forward) { routing.route(threads: threads) }
        experts.figures[layer] = ExpertActivations.Figures(
            routedCounts: routing.routedCounts, probabilitySums: routing.probabilitySums,
            dropped: routing.droppedCount, zLoss: routing.zLoss, switchLoss: routing.switchBalanceLoss)
        model.gatherExpertInputs(routing, from: saved.mlpNorm, into: experts.input)
        // One product per expert over the rows it received (a grouped GEMM).
        for expert in 0..<e {
            let rows = routing.rows(of: expert)
            guard !rows.isEmpty else { continue }
            let input = experts.input + rows.lowerBound * c
            model.timed(.matmul, .forward) {
                Matmul.forward(output: s.gate + rows.lowerBound * i, input: input, weight: w.gate[expert], bias: nil,
                               rowCount: rows.count, inputSize: c, outputSize: i, threads: threads)
                Matmul.forward(output: s.up + rows.lowerBound * i, input: input, weight: w.up[expert], bias: nil,
                               rowCount: rows.count, inputSize: c, outputSize: i, threads: threads)
            }
        }
        model.timed(.swiglu, .forward) {
            SwiGLU.forward(output: s.activation, gate: s.gate, up: s.up, count: routing.keptCount * i, threads: threads)
        }
        for expert in 0..<e {
            let rows = routing.rows(of: expert)
            guard !rows.isEmpty else { continue }
            model.timed(.matmul, .forward) {
                Matmul.forward(output: s.output + rows.lowerBound * c, input: s.activation + rows.lowerBound * i,
                               weight: w.down[expert], bias: nil, rowCount: rows.count, inputSize: i, outputSize: c, threads: threads)
            }
        }
        // Combine: each token's Σ_j w_j · output of its kept slots, in slot order.
        let a = model.activations
        let streamOut = a.residual(layer + 1)
        let partial = model.partialOutput(for: streamOut)
        model.timed(.experts, .forward) {
            threads.parallelFor(0..<n, minimumChunk: 16) { tokens in
                for token in tokens {
                    let target = partial + token * c
                    target.update(repeating: 0, count: c)
                    for slot in token * k..<(token + 1) * k where routing.slotRows[slot] >= 0 {
                        let weight = routing.weights[slot], source = s.output + Int(routing.slotRows[slot]) * c
                        for column in 0..<c { target[column] += weight * source[column] }
                    }
                }
            }
        }
        if let shared = w.shared { sharedExpertForward(s.shared, shared, into: partial) }
        model.leaveRegion(partial: partial, into: streamOut)
        model.timed(.residual, .forward) {
            Residual.forward(output: streamOut, a: saved.attentionResidual, b: streamOut, count: model.localTokenCount * c,
                             threads: threads)
        }
    }

    /// Qwen2-MoE's shared expert on every token, σ(m·g)·down(silu(gate(m))·up(m)), added to
    /// `partial` [N, C].
    private func sharedExpertForward(_ s: ExpertActivations.SharedActivations, _ w: SharedExpert<UnsafeMutablePointer<Float>>,
                                     into partial: UnsafeMutablePointer<Float>) {
        let config = model.config, threads = model.threads
        let (n, c, i) = (model.tokenCount, config.hiddenSize, config.sharedExpertIntermediateSize)
        let input = UnsafePointer(saved.mlpNorm)
        model.timed(.matmul, .forward) {
            Matmul.forward(output: s.gate, input: input, weight: w.gate, bias: nil, rowCount: n, inputSize: c, outputSize: i, threads: threads)
            Matmul.forward(output: s.up, input: input, weight: w.up, bias: nil, rowCount: n, inputSize: c, outputSize: i, threads: threads)
            Matmul.forward(output: s.scale, input: input, weight: w.scale, bias: nil, rowCount: n, inputSize: c, outputSize: 1, threads: threads)
        }
        model.timed(.swiglu, .forward) {
            SwiGLU.forward(output: s.activation, gate: s.gate, up: s.up, count: n * i, threads: threads)
        }
        model.timed(.matmul, .forward) {
            Matmul.forward(output: s.output, input: s.activation, weight: w.down, bias: nil, rowCount: n, inputSize: i, outputSize: c,
                           threads: threads)
        }
        model.timed(.experts, .forward) {
            threads.parallelFor(0..<n, minimumChunk: 16) { tokens in
                for token in tokens {
                    let sigma = 1 / (1 + Foundation.exp(-s.scale[token]))
                    let target = partial + token * c, source = s.output + token * c
                    for column in 0..<c { target[column] += sigma * source[column] }
                }
            }
        }
    }
}
