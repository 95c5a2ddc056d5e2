import Foundation
import Model
import Tensors
import TensorComparison
import Testing

/// A `ParameterAccess` that behaves as ZeRO-3 and ZeRO-2 do with memory — parameters handed out
/// in a fresh copy per acquire and poisoned (NaN) on release, gradients written into a fresh zero
/// buffer that is added to the arena and poisoned on release — and records every call.
final class SpyParameters: ParameterAccess {
    enum Event: Equatable, CustomStringConvertible {
        case acquireParameters(ModelBlock), releaseParameters(ModelBlock)
        case acquireGradients(ModelBlock), releaseGradients(ModelBlock)

        var description: String {
            switch self {
            case .acquireParameters(let block): "+P(\(block))"
            case .releaseParameters(let block): "-P(\(block))"
            case .acquireGradients(let block): "+G(\(block))"
            case .releaseGradients(let block): "-G(\(block))"
            }
        }
    }

    let arena: ArenaParameters
    var layout: ParameterLayout { arena.layout }
    private(set) var events: [Event] = []
    private var parameterBuffers: [ModelBlock: Tensor] = [:]
    private var gradientBuffers: [ModelBlock: Tensor] = [:]

    init(_ arena: ArenaParameters) { self.arena = arena }

    func acquireParameters(_ block: ModelBlock) -> UnsafeMutablePointer<Float> {
        events.append(.acquireParameters(block))
        precondition(parameterBuffers[block] == nil, "parameters of \(block) acquired twice")
        let range = layout.range(of: block)
        let buffer = Tensor(shape: [range.count])
        buffer.pointer.update(from: arena.parameters.pointer + range.lowerBound, count: range.count)
        parameterBuffers[block] = buffer
        return buffer.pointer
    }

    func releaseParameters(_ block: ModelBlock) {
        events.append(.releaseParameters(block))
        guard let buffer = parameterBuffers.removeValue(forKey: block) else { preconditionFailure("\(block) not acquired") }
        buffer.fill(.nan)
        retired.append(buffer)  // keep the memory alive so a late read sees NaN, not freed memory
    }

    func acquireGradients(_ block: ModelBlock) -> UnsafeMutablePointer<Float> {
        events.append(.acquireGradients(block))
        precondition(gradientBuffers[block] == nil, "gradients of \(block) acquired twice")
        let buffer = Tensor(shape: [layout.range(of: block).count])
        gradientBuffers[block] = buffer
        return buffer.pointer
    }

    func releaseGradients(_ block: ModelBlock) {
        events.append(.releaseGradients(block))
        guard let buffer = gradientBuffers.removeValue(forKey: block) else { preconditionFailure("\(block) not acquired") }
        let range = layout.range(of: block)
        for index in 0..<range.count { arena.gradients.pointer[range.lowerBound + index] += buffer.pointer[index] }
        buffer.fill(.nan)
        retired.append(buffer)
    }

    private var retired: [Tensor] = []

    var isBalanced: Bool { parameterBuffers.isEmpty && gradientBuffers.isEmpty }

    func clearEvents() { events = [] }
}

@Suite struct ParameterAccessOrderTests {
    init() { useSingleThreadedBLAS() }

    /// The documented order (LlamaModel's doc comment): what DP, ZeRO-2 and ZeRO-3 rely on.
    func expectedForward(layers: Int, tied: Bool) -> [SpyParameters.Event] {
        var events: [SpyParameters.Event] = [.acquireParameters(.embedding), .releaseParameters(.embedding)]
        for layer in 0..<layers { events += [.acquireParameters(.layer(layer)), .releaseParameters(.layer(layer))] }
        events += tied
            ? [.acquireParameters(.head), .acquireParameters(.embedding), .releaseParameters(.embedding), .releaseParameters(.head)]
            : [.acquireParameters(.head), .releaseParameters(.head)]
        return events
    }

    func expectedBackward(layers: Int, tied: Bool) -> [SpyParameters.Event] {
        var events: [SpyParameters.Event] = tied
            ? [.acquireParameters(.head), .acquireParameters(.embedding), .acquireGradients(.head), .acquireGradients(.embedding),
               .releaseGradients(.head), .releaseParameters(.embedding), .releaseParameters(.head)]
            : [.acquireParameters(.head), .acquireGradients(.head), .releaseGradients(.head), .releaseParameters(.head)]
        for layer in (0..<layers).reversed() {
            events += [.acquireParameters(.layer(layer)), .acquireGradients(.layer(layer)),
                       .releaseGradients(.layer(layer)), .releaseParameters(.layer(layer))]
        }
        events += tied ? [.releaseGradients(.embedding)] : [.acquireGradients(.embedding), .releaseGradients(.embedding)]
        return events
    }

    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func blocksAreAcquiredAndReleasedInTheDocumentedOrder(tied: Bool, recompute: Bool) {
        let config = tinyConfig(tied: tied, layers: 3)
        let arena = randomParameters(ParameterLayout(config: config), seed: 41)
        let reference = arena.copy()
        let spy = SpyParameters(arena)
        let batch = Batch(batchSize: 2, sequenceLength: 9, vocabularySize: config.vocabSize, seed: 42)
        let model = LlamaModel(config: config, microBatchSize: 2, sequenceLength: 9, recompute: recompute)

        let total = model.forward(tokens: batch.tokens, targets: batch.targets, positions: batch.positions, parameters: spy)
        #expect(spy.events == expectedForward(layers: 3, tied: tied), "\(spy.events)")
        #expect(spy.isBalanced)
        spy.clearEvents()
        model.backward(lossScale: 1 / Float(total.targetCount), parameters: spy)
        #expect(spy.events == expectedBackward(layers: 3, tied: tied), "\(spy.events)")
        #expect(spy.isBalanced)

        // Every gradient acquired exactly once, released after it was acquired.
        for block in arena.layout.blocks {
            #expect(spy.events.filter { $0 == .acquireGradients(block) }.count == 1, "\(block)")
            #expect(spy.events.firstIndex(of: .acquireGradients(block))! < spy.events.firstIndex(of: .releaseGradients(block))!)
        }
        // No pointer was used after its release (poisoned buffers would have spread NaN), and the
        // results are those of plain arenas.
        let plainTotal = step(LlamaModel(config: config, microBatchSize: 2, sequenceLength: 9, recompute: recompute),
                              batch, reference)
        #expect(total == plainTotal)
        expectSameBits(arena.gradients.values, reference.gradients.values, "gradients through the spy vs plain arenas")
    }
}
