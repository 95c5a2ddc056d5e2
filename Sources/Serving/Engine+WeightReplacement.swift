import Model

/// In-place weight replacement for trainers that generate with the engine between updates
/// (GRPO/PPO rollouts): no restart, no checkpoint on disk.
///
/// Only an idle engine takes new weights (no sequence waiting or running; outputs not yet
/// returned by `step` may remain): a sequence whose earlier tokens' keys and values came from
/// the old weights would continue on a mixture of two models, which no rollout wants. Finish
/// the rollout (`runSamplesToCompletion`) or `cancel` what is left first; a busy engine throws
/// `engineBusy` and changes nothing.
///
/// Every cached prefix block is forgotten (`KVBlockPool.dropCachedPrefixes`): its keys and
/// values were computed with the old weights, and a later prompt with the same prefix must not
/// reuse them.
///
/// Tensor parallelism: each rank's engine holds its own slices, so every rank replaces its own
/// (`model.weights.tensorParallel` says which; `replaceWeights(from:layout:)` slices a whole
/// model for it). The followers must be outside `InferenceModel.follow` meanwhile: rank 0 calls
/// `InferenceTensorGroup.stopFollowers()` after its rollout, every rank replaces its weights,
/// then the followers call `follow` again and rank 0 steps the next rollout. The block ids are
/// rank 0's alone, so only rank 0's prefix registry matters, and it is dropped here.
extension Engine {
    /// Lets `update` overwrite the weights in place: `parameters` is the engine's arena laid out
    /// as `layout` (this rank's `InferenceWeights.layout`: Hugging Face names, the whole model on
    /// one rank, this rank's slices under tensor parallelism).
    ///
    /// The prefix cache is dropped before `update` runs, so an `update` that throws part-way
    /// leaves no stale prefix behind, only partly written weights: call again. Anything else that
    /// shares this `InferenceWeights` object sees the new values too.
    public func replaceWeights(_ update: (_ layout: ParameterLayout, _ parameters: UnsafeMutableBufferPointer<Float>) throws -> Void) throws {
        try checkIdleForWeightReplacement()
        cache.dropCachedPrefixes()
        let weights = model.weights
        try update(weights.layout, UnsafeMutableBufferPointer(start: weights.parameters.pointer, count: weights.layout.count))
    }

    /// Copies new weights from a flat arena laid out as `layout` (a trainer's whole-model
    /// `ArenaParameters`, or an arena of this rank's shapes): see
    /// `InferenceWeights.copyParameters(from:layout:)`. Checked tensor by tensor first; on a
    /// mismatch nothing changes, the prefix cache included.
    public func replaceWeights(from source: UnsafePointer<Float>, layout: ParameterLayout) throws(ServingError) {
        try checkIdleForWeightReplacement()
        try model.weights.copyParameters(from: source, layout: layout)
        cache.dropCachedPrefixes()
    }

    private func checkIdleForWeightReplacement() throws(ServingError) {
        guard isIdle else {
            let counts = sequenceCounts
            throw ServingError(.engineBusy, "the engine's weights can be replaced only while it is idle, but \(counts.running) sequences are running and \(counts.waiting) waiting: finish them (runSamplesToCompletion) or cancel them first")
        }
    }
}
