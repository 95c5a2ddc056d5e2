/// A run of consecutive elements of a flattened tensor and where they go.
public struct ElementRun {
    public var elements: Range<Int>
    public var destination: UnsafeMutablePointer<Float>

    public init(elements: Range<Int>, destination: UnsafeMutablePointer<Float>) {
        self.elements = elements
        self.destination = destination
    }
}

extension CheckpointReader {
    /// Reads many runs of tensor `name` (e.g. the rows of a column slice, as tensor parallelism
    /// holds `o_proj`), decompressing each stored frame once however many runs it feeds.
    public func read(name: String, runs: [ElementRun]) throws(CheckpointError) {
        guard !runs.isEmpty else { return }
        let tensor = try tensor(named: name)
        try requireF32(tensor)
        for run in runs {
            guard run.elements.lowerBound >= 0, run.elements.upperBound <= tensor.elementCount else {
                throw CheckpointError(.rangeOutsideTensor, "elements \(run.elements.lowerBound)..<\(run.elements.upperBound) are outside tensor \(name) of \(tensor.elementCount) elements (checkpoint \(stepDirectory))")
            }
            if let gap = tensor.firstGap(in: run.elements) {
                throw CheckpointError(.rangeNotCovered, "checkpoint \(stepDirectory) holds no slice of tensor \(name) covering elements \(gap.lowerBound)..<\(gap.upperBound)")
            }
        }
        let sorted = runs.sorted { $0.elements.lowerBound < $1.elements.lowerBound }
        for slice in tensor.slices {
            // The runs overlapping this frame (binary search for the first that ends after it starts).
            var low = 0, high = sorted.count
            while low < high {
                let middle = (low + high) / 2
                if sorted[middle].elements.upperBound <= slice.start { low = middle + 1 } else { high = middle }
            }
            guard low < sorted.count, sorted[low].elements.lowerBound < slice.end else { continue }
            let bytes = try frame(slice, of: tensor)
            bytes.withUnsafeBytes { raw in
                let values = raw.bindMemory(to: Float.self)
                var index = low
                while index < sorted.count, sorted[index].elements.lowerBound < slice.end {
                    let run = sorted[index]
                    let lower = max(slice.start, run.elements.lowerBound), upper = min(slice.end, run.elements.upperBound)
                    for element in lower..<upper { run.destination[element - run.elements.lowerBound] = values[element - slice.start] }
                    index += 1
                }
            }
        }
    }
}
