import Model
import Parallel
import Tensors

extension InferenceWeights {
    /// Copies every tensor of this arena, by name, from `source` laid out as `sourceLayout`:
    /// either a whole-model arena (a trainer's `ArenaParameters.parameters` with
    /// `ParameterLayout(config:)`), of which a tensor-parallel rank takes its own slices, or an
    /// arena already in this arena's shapes (a trainer with the same tensor-parallel split).
    ///
    /// Every tensor is checked before any is copied, so a mismatch leaves the weights as they
    /// were. The error names the tensor and both shapes.
    public func copyParameters(from source: UnsafePointer<Float>, layout sourceLayout: ParameterLayout) throws(ServingError) {
        guard quantized.isEmpty else {
            throw ServingError(.invalidRequest, "the served model is quantized (\(Set(quantized.values.map(\.format.rawValue)).sorted().joined(separator: ", "))); new weights cannot replace it in place: serve an f32 checkpoint to replace weights, or restart from a quantized one")
        }
        var copies: [(index: Int, sourceOffset: Int, takesSlice: Bool)] = []
        for (index, entry) in layout.entries.enumerated() {
            guard let sourceEntry = sourceLayout.entry(named: entry.name) else {
                throw ServingError(.invalidRequest, "the new weights have no tensor \(entry.name): hand over every tensor of the model (ParameterLayout(config:) of its config)")
            }
            if sourceEntry.shape == entry.shape {
                copies.append((index, sourceEntry.offset, false))
            } else if let split = tensorParallel, sourceEntry.shape == split.globalLayout.entry(named: entry.name)?.shape {
                copies.append((index, sourceEntry.offset, true))
            } else {
                let expected = tensorParallel.flatMap { $0.globalLayout.entry(named: entry.name)?.shape }
                    .map { "\($0) (or this rank's slice \(entry.shape))" } ?? "\(entry.shape)"
                throw ServingError(.invalidRequest, "tensor \(entry.name) has shape \(sourceEntry.shape) in the new weights but the served model's is \(expected): the new weights must come from a model of the same config")
            }
        }
        for copy in copies {
            let entry = layout.entries[copy.index]
            let destination = parameters.pointer + entry.offset
            if copy.takesSlice, let split = tensorParallel {
                split.copySlice(copy.index, from: source + copy.sourceOffset, to: destination)
            } else {
                destination.update(from: source + copy.sourceOffset, count: entry.count)
            }
        }
    }
}
