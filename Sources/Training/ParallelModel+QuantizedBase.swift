import Model
import Parallel
import Tensors

/// QLoRA on the mesh: each rank quantizes the layer projections it holds (its pipeline stage's
/// layers, its tensor-parallel slice of each) once the base is loaded, hands the NF4 copies to
/// its model instances and releases the f32 ones. Data-parallel replicas quantize the same
/// values and hold the same bits; nothing is communicated.
extension ParallelModel {
    /// Quantizes the base's layer projections (`lora.quantize_base`) and releases their f32
    /// pages; does nothing without QLoRA or when done already. Call after every f32 value of
    /// the base is in place (`Trainer.initialize(from:)`, `Trainer.resume(from:)`).
    public func quantizeBase(threads: KernelThreads) {
        guard quantizedBase == nil, let format = lora?.quantizeBase else { return }
        // ZeRO 0–2 hold every parameter whole on every rank (ZeRO-3 is refused at init).
        var slices: [String: TensorSlice] = [:]
        for slice in parameters.neededSlices(.parameters) { slices[slice.name] = slice }
        let embeddings = lora?.quantizeEmbeddings ?? false
        let base = QuantizedBase(format: format, layout: layout, embeddings: embeddings, threads: threads) { entry in
            guard let slice = slices[entry.name], slice.elements.count == entry.count else { return nil }
            return UnsafePointer(slice.pointer)
        }
        for model in models { model.quantizedBase = base }
        quantizedBase = base
        var released = 0
        for entry in layout.entries where base.names.contains(entry.name) {
            if let slice = slices[entry.name] { released += MemoryPages.release(slice.pointer, count: entry.count) }
        }
        releasedBaseBytes = released
    }

    /// The (global) names of the tensors held only as NF4: a QLoRA checkpoint does not save
    /// them (they come from the base checkpoint it records).
    public var quantizedTensorNames: Set<String> { quantizedBase?.names ?? [] }

}
