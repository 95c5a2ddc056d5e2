import Foundation
import Runtime

/// A committed checkpoint opened for reading: any element range of any tensor is assembled from
/// whichever slices hold it, so the rank count and sharding at load time need not match those
/// at save time. Reading is local (no communication); every rank opens its own reader.
public final class CheckpointReader: @unchecked Sendable {
    public let stepDirectory: String
    public let index: CheckpointIndex
    /// The trainer's `metadata.json`, as saved.
    public let metadata: Data
    private let tensorsByName: [String: CheckpointIndex.Tensor]

    public var step: Int { index.step }
    public var tensorNames: [String] { index.tensors.map(\.name) }

    /// Opens `stepDirectory`, which must hold `COMMITTED`, `index.json` and `metadata.json`.
    public init(stepDirectory: String) throws(CheckpointError) {
        guard CheckpointFiles.isCommitted(stepDirectory) else {
            throw CheckpointError(.notCommitted, "checkpoint \(stepDirectory) is not committed (no \(CheckpointFiles.commitMarkerName) marker): its save did not finish")
        }
        let indexPath = stepDirectory + "/" + CheckpointFiles.indexName
        let metadataPath = stepDirectory + "/" + CheckpointFiles.metadataName
        guard let indexData = FileManager.default.contents(atPath: indexPath) else {
            throw CheckpointError(.missingFile, "checkpoint file \(indexPath) is missing")
        }
        guard let metadata = FileManager.default.contents(atPath: metadataPath) else {
            throw CheckpointError(.missingFile, "checkpoint file \(metadataPath) is missing")
        }
        self.stepDirectory = stepDirectory
        self.index = try CheckpointIndex.decode(indexData, file: indexPath)
        self.metadata = metadata
        self.tensorsByName = Dictionary(index.tensors.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    public func tensor(named name: String) throws(CheckpointError) -> CheckpointIndex.Tensor {
        guard let tensor = tensorsByName[name] else {
            throw CheckpointError(.unknownTensor, "checkpoint \(stepDirectory) has no tensor \(name)")
        }
        return tensor
    }

    public func shape(of name: String) throws(CheckpointError) -> [Int] {
        try tensor(named: name).shape
    }

    /// Reads elements `elements` of the flattened tensor `name` into `output` (of the same count),
    /// decompressing and checksumming every frame that overlaps them.
    public func read(name: String, elements: Range<Int>, into output: UnsafeMutableBufferPointer<Float>) throws(CheckpointError) {
        let tensor = try tensor(named: name)
        try requireF32(tensor)
        precondition(output.count == elements.count, "tensor \(name): \(output.count) outputs for elements \(elements)")
        try requireCovered(elements, of: tensor)
        for slice in tensor.slices where slice.start < elements.upperBound && slice.end > elements.lowerBound {
            let bytes = try frame(slice, of: tensor)
            let lower = max(slice.start, elements.lowerBound), upper = min(slice.end, elements.upperBound)
            bytes.withUnsafeBytes { raw in
                let values = raw.bindMemory(to: Float.self)
                for element in lower..<upper { output[element - elements.lowerBound] = values[element - slice.start] }
            }
        }
    }

    /// Refuses elements outside `tensor`, or not covered by its saved slices.
    private func requireCovered(_ elements: Range<Int>, of tensor: CheckpointIndex.Tensor) throws(CheckpointError) {
        guard elements.lowerBound >= 0, elements.upperBound <= tensor.elementCount else {
            throw CheckpointError(.rangeOutsideTensor, "elements \(elements.lowerBound)..<\(elements.upperBound) are outside tensor \(tensor.name) of \(tensor.elementCount) elements (checkpoint \(stepDirectory))")
        }
        if let gap = tensor.firstGap(in: elements) {
            throw CheckpointError(.rangeNotCovered, "checkpoint \(stepDirectory) holds no slice of tensor \(tensor.name) covering elements \(gap.lowerBound)..<\(gap.upperBound)")
        }
    }

    /// Refuses a tensor stored in a block format where f32 values are wanted (training, export,
    /// evaluation from a quantized checkpoint).
    func requireF32(_ tensor: CheckpointIndex.Tensor) throws(CheckpointError) {
        guard tensor.dtype.isQuantized else { return }
        throw CheckpointError(.quantizedTensor, "checkpoint \(stepDirectory) holds tensor \(tensor.name) quantized as \(tensor.dtype.rawValue) (a checkpoint for inference, written by `meshlm ckpt quantize`); this command needs f32 weights: give it the f32 checkpoint the quantized one was made from")
    }

    /// Reads the blocks holding elements `elements` (whole blocks: both ends multiples of 32) of
    /// a block-format tensor into `output`, `dtype.byteCount(elements: elements.count)` bytes.
    public func readBlocks(name: String, elements: Range<Int>, into output: UnsafeMutableRawPointer) throws(CheckpointError) {
        let tensor = try tensor(named: name)
        let dtype = tensor.dtype
        guard dtype.isQuantized else {
            throw CheckpointError(.badIndex, "checkpoint \(stepDirectory) holds tensor \(name) as \(dtype.rawValue), not in a block format")
        }
        try requireCovered(elements, of: tensor)
        precondition(elements.lowerBound % dtype.elementsPerBlock == 0 && elements.upperBound % dtype.elementsPerBlock == 0,
                     "tensor \(name): elements \(elements) are not whole blocks of \(dtype.elementsPerBlock)")
        for slice in tensor.slices where slice.start < elements.upperBound && slice.end > elements.lowerBound {
            let bytes = try frame(slice, of: tensor)
            let lower = max(slice.start, elements.lowerBound), upper = min(slice.end, elements.upperBound)
            bytes.withUnsafeBytes { raw in
                (output + dtype.byteCount(elements: lower - elements.lowerBound))
                    .copyMemory(from: raw.baseAddress! + dtype.byteCount(elements: lower - slice.start),
                                byteCount: dtype.byteCount(elements: upper - lower))
            }
        }
    }

    /// Reads a whole tensor, flattened.
    public func read(name: String) throws(CheckpointError) -> [Float] {
        let count = try tensor(named: name).elementCount
        var values = [Float](repeating: 0, count: count)
        try values.withUnsafeMutableBufferPointer { (buffer) throws(CheckpointError) in try read(name: name, elements: 0..<count, into: buffer) }
        return values
    }

    /// Checks the whole checkpoint: every rank's shard file exists, every tensor is fully
    /// covered, and every frame decompresses to its recorded size and checksum.
    public func verify() throws(CheckpointError) {
        for rank in 0..<index.worldSize {
            let path = stepDirectory + "/" + CheckpointFiles.shardName(rank: rank)
            guard FileManager.default.fileExists(atPath: path) else {
                throw CheckpointError(.missingFile, "checkpoint file \(path) is missing")
            }
        }
        for tensor in index.tensors {
            if let gap = tensor.firstGap(in: 0..<tensor.elementCount) {
                throw CheckpointError(.rangeNotCovered, "checkpoint \(stepDirectory) holds no slice of tensor \(tensor.name) covering elements \(gap.lowerBound)..<\(gap.upperBound)")
            }
            for slice in tensor.slices { _ = try frame(slice, of: tensor) }
        }
    }

    /// Like `verify`, but goes on after a failure: every problem found (missing files, gaps,
    /// truncated, corrupt or mismatching frames), each naming the file and tensor.
    public func verifyAll() -> [CheckpointError] {
        var problems: [CheckpointError] = []
        for rank in 0..<index.worldSize {
            let path = stepDirectory + "/" + CheckpointFiles.shardName(rank: rank)
            if !FileManager.default.fileExists(atPath: path) {
                problems.append(CheckpointError(.missingFile, "checkpoint file \(path) is missing"))
            }
        }
        for tensor in index.tensors {
            if let gap = tensor.firstGap(in: 0..<tensor.elementCount) {
                problems.append(CheckpointError(.rangeNotCovered, "checkpoint \(stepDirectory) holds no slice of tensor \(tensor.name) covering elements \(gap.lowerBound)..<\(gap.upperBound)"))
            }
            for slice in tensor.slices {
                do { _ = try frame(slice, of: tensor) } catch {
                    if error.kind != .missingFile { problems.append(error) }
                }
            }
        }
        return problems
    }

    /// The forms of checkpoint path every command accepts, for error messages.
    public static let acceptedForms = "give a step directory (RUN/checkpoints/step_N), a checkpoints directory or a run directory"

    /// The directory a checkpoint path a user gives stands for: a run directory (one holding
    /// `checkpoints/`) stands for that checkpoints directory; a step or checkpoints directory for
    /// itself. Every command taking a checkpoint resolves it here, so they accept the same forms.
    public static func resolve(_ path: String) -> String {
        let checkpoints = (path as NSString).appendingPathComponent("checkpoints")
        var isDirectory: ObjCBool = false
        let isRun = FileManager.default.fileExists(atPath: checkpoints, isDirectory: &isDirectory) && isDirectory.boolValue
            && !FileManager.default.fileExists(atPath: path + "/" + CheckpointFiles.indexName)
        return isRun ? checkpoints : path
    }

    /// Opens what a user names on the command line: a step directory (`…/step_N`, committed), a
    /// checkpoints directory or a run directory, whose newest committed checkpoint (by `latest`,
    /// verified with `verifying`) is used; `warn` hears of the checkpoints skipped on the way.
    public static func locate(_ path: String, verifying: Bool = false,
                              warn: (String) -> Void = { _ in }) throws(CheckpointError) -> CheckpointReader {
        let directory = resolve(path)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CheckpointError(.missingFile, "no committed checkpoint at \(path): no such directory; \(acceptedForms)")
        }
        if FileManager.default.fileExists(atPath: directory + "/" + CheckpointFiles.indexName)
            || CheckpointFiles.step(ofDirectoryName: (directory as NSString).lastPathComponent) != nil {
            return try CheckpointReader(stepDirectory: directory)
        }
        let latest = latest(in: directory, verifying: verifying)
        for warning in latest.warnings { warn(warning) }
        guard let reader = latest.reader else {
            throw CheckpointError(.notCommitted, "no committed checkpoint at \(path): \(acceptedForms)"
                                  + (latest.warnings.isEmpty ? "" : " (" + latest.warnings.joined(separator: "; ") + ")"))
        }
        return reader
    }

    private static var commitMarker: String { CheckpointFiles.commitMarkerName }

    /// Bytes the index places in each shard file (compressed), by file name.
    public var compressedBytesPerFile: [String: Int] {
        var totals: [String: Int] = [:]
        for tensor in index.tensors { for slice in tensor.slices { totals[slice.file, default: 0] += slice.length } }
        return totals
    }

    /// A file of the step directory other than the tensors (e.g. `model_config.json`), if present.
    public func file(named name: String) -> Data? {
        FileManager.default.contents(atPath: stepDirectory + "/" + name)
    }

    /// One slice's uncompressed bytes, checked against the index.
    func frame(_ slice: CheckpointIndex.Slice, of tensor: CheckpointIndex.Tensor) throws(CheckpointError) -> [UInt8] {
        let path = stepDirectory + "/" + slice.file
        let what = "tensor \(tensor.name) elements \(slice.start)..<\(slice.end)"
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            if errno == ENOENT { throw CheckpointError(.missingFile, "checkpoint file \(path) is missing (it holds \(what))") }
            throw CheckpointFiles.ioError("open", path)
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw CheckpointFiles.ioError("stat", path) }
        guard Int(status.st_size) >= slice.offset + slice.length else {
            throw CheckpointError(.truncatedFile, "checkpoint file \(path) is truncated: \(what) needs bytes \(slice.offset)..<\(slice.offset + slice.length), the file has \(status.st_size)")
        }
        var compressed = [UInt8](repeating: 0, count: slice.length)
        let received = compressed.withUnsafeMutableBytes { raw in
            var done = 0
            while done < raw.count {
                let result = pread(descriptor, raw.baseAddress! + done, raw.count - done, off_t(slice.offset + done))
                if result < 0 && errno == EINTR { continue }
                if result <= 0 { break }
                done += result
            }
            return done
        }
        guard received == slice.length else {
            throw CheckpointError(.truncatedFile, "checkpoint file \(path) is truncated: \(what) needs bytes \(slice.offset)..<\(slice.offset + slice.length), read \(received)")
        }
        let bytes: [UInt8]
        do {
            bytes = try Zstd.decompress(compressed, expectedSize: slice.bytes)
        } catch {
            throw CheckpointError(.corruptFrame, "checkpoint file \(path) is corrupt: \(what): \(error)")
        }
        let checksum = CRC32C.checksum(bytes)
        guard checksum == slice.crc32c else {
            throw CheckpointError(.checksumMismatch, "checkpoint file \(path) fails its checksum: \(what) has CRC-32C \(hex(checksum)), the index says \(hex(slice.crc32c))")
        }
        return bytes
    }

    /// The newest loadable checkpoint under `directory`, or nil when there is none.
    ///
    /// The step `latest` names is tried first (so a run resumed from an older checkpoint does not
    /// jump to a newer, abandoned one); when it is missing, uncommitted or (with `verifying`)
    /// fails verification, committed step directories are tried newest first. Every checkpoint
    /// skipped on the way is reported in `warnings`.
    public static func latest(in directory: String, verifying: Bool = false) -> LatestCheckpoint {
        var warnings: [String] = []
        var tried: Set<String> = []
        func open(_ path: String) -> CheckpointReader? {
            tried.insert(path)
            do {
                let reader = try CheckpointReader(stepDirectory: path)
                if verifying { try reader.verify() }
                return reader
            } catch {
                warnings.append("skipping checkpoint \(path): \(error.description)")
                return nil
            }
        }
        let latestPath = directory + "/" + CheckpointFiles.latestName
        if let text = try? String(contentsOfFile: latestPath, encoding: .utf8) {
            let name = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if CheckpointFiles.step(ofDirectoryName: name) != nil, let reader = open(directory + "/" + name) {
                return LatestCheckpoint(reader: reader, warnings: warnings)
            }
            if CheckpointFiles.step(ofDirectoryName: name) == nil {
                warnings.append("\(latestPath) names no step directory (\"\(name)\")")
            }
        }
        for candidate in CheckpointFiles.stepDirectories(in: directory).reversed() where !tried.contains(candidate.path) {
            if let reader = open(candidate.path) { return LatestCheckpoint(reader: reader, warnings: warnings) }
        }
        return LatestCheckpoint(reader: nil, warnings: warnings)
    }
}

/// The result of `CheckpointReader.latest`: the checkpoint to resume from, if any, and why
/// newer ones were passed over (for the trainer to print as warnings).
public struct LatestCheckpoint: Sendable {
    public let reader: CheckpointReader?
    public let warnings: [String]
}

private func hex(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
}
