// Checkpoint checks (docs/checkpoints.md, "How it is tested"): saving on one rank count and
// loading on another, corruption and truncation caught with the file and tensor named, and
// SIGKILL during saves never leaving a committed but incomplete checkpoint. Every value is a
// hash of (tensor, element, step), so an element routed to the wrong place cannot pass.
import Checkpoint
import Foundation
import Runtime

/// The tensors every checkpoint check saves: uneven sizes, one smaller than the rank count,
/// a scalar, and (for the crash check) a large one so a kill lands mid-write.
func checkpointTensors(large: Bool) -> [(name: String, shape: [Int])] {
    var tensors: [(String, [Int])] = [("model.embed_tokens.weight", [7, 143]), ("model.layers.0.mlp.up_proj.weight", [64, 33]),
                                      ("model.norm.weight", [3]), ("optimizer.step", [])]
    if large { tensors.append(("model.lm_head.weight", [512, 1024])) }
    return tensors
}

func checkpointValue(tensor: Int, element: Int, step: Int) -> Float {
    let hash = UInt64(element) &* 2_654_435_761 &+ UInt64(tensor) &* 40_503 &+ UInt64(step) &* 977
    return Float(hash % 4_000_000) / 4
}

/// ShardLayout's split: `count` padded up to a multiple of `parts`, rank r owns the r-th share.
func ownedRange(count: Int, parts: Int, rank: Int) -> Range<Int> {
    let share = (count + parts - 1) / parts
    return min(rank * share, count)..<min((rank + 1) * share, count)
}

/// Saves step `step` of the test tensors from every rank: the up_proj weight in round-robin
/// chunks of 100 (several slices per rank), the others ZeRO-style. The source arrays are
/// overwritten right after staging, as training does, so a save that did not copy them fails
/// the value checks. Like `CheckpointSaver`, the commit waits at "step boundaries" (a short
/// sleep standing for a training step) until an allreduce says every rank's file is written.
func saveCheckpoint(_ world: Communicator, directory: String, step: Int, keep: Int, large: Bool,
                    compression: CheckpointCompression = .zstd) throws {
    let writer = try CheckpointWriter(directory: directory, step: step, communicator: world)
    writer.compression = compression
    for (t, tensor) in checkpointTensors(large: large).enumerated() {
        let count = tensor.shape.reduce(1, *)
        let ranges: [Range<Int>] = tensor.name.contains("up_proj")
            ? stride(from: world.rank * 100, to: count, by: 100 * world.size).map { $0..<min($0 + 100, count) }
            : [ownedRange(count: count, parts: world.size, rank: world.rank)]
        for range in ranges {
            var values = range.map { checkpointValue(tensor: t, element: $0, step: step) }
            values.withUnsafeBufferPointer { writer.add(name: tensor.name, globalShape: tensor.shape, elements: range, values: $0) }
            values.withUnsafeMutableBufferPointer { $0.update(repeating: -1) }
        }
    }
    writer.writeShardInBackground()
    while try world.allreduce(Int32(writer.isShardWritten ? 1 : 0), .min) == 0 { usleep(300) }
    let metadata = Data("{\"step\":\(step),\"ranks\":\(world.size)}".utf8)
    try writer.commit(metadata: metadata, keep: keep)
}

/// Checks this rank's share (split over this run's rank count) and one odd range of every tensor.
func checkLoaded(_ reader: CheckpointReader, rank: Int, size: Int, large: Bool) throws {
    let step = reader.step
    try expect("checkpoint-metadata", String(decoding: reader.metadata, as: UTF8.self).hasPrefix("{\"step\":\(step),"), true, rank: rank)
    try expect("checkpoint-names", reader.tensorNames, checkpointTensors(large: large).map(\.name).sorted(), rank: rank)
    for (t, tensor) in checkpointTensors(large: large).enumerated() {
        let count = tensor.shape.reduce(1, *)
        try expect("checkpoint-shape", try reader.shape(of: tensor.name), tensor.shape, rank: rank)
        for range in [ownedRange(count: count, parts: size, rank: rank), (count / 3)..<(count - count / 5)] {
            var values = [Float](repeating: -1, count: range.count)
            try values.withUnsafeMutableBufferPointer { try reader.read(name: tensor.name, elements: range, into: $0) }
            try expect("checkpoint-values \(tensor.name) \(range)", values, range.map { checkpointValue(tensor: t, element: $0, step: step) }, rank: rank)
        }
    }
}

/// Runs `body`, which must throw a `CheckpointError` of `kind` whose message contains every piece.
func expectCheckpointError(_ name: String, _ kind: CheckpointError.Kind, mentioning pieces: [String], _ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as CheckpointError {
        guard error.kind == kind, pieces.allSatisfy(error.description.contains) else {
            throw JobError("check \(name) failed: got \(error.kind) \"\(error.description)\", want \(kind) mentioning \(pieces)")
        }
        return
    }
    throw JobError("check \(name) failed: no error")
}

/// One-rank checks of the format and its failure modes (run under `mpirun -np 1`).
func checkpointUnitChecks(_ world: Communicator, _ log: Log, directory: String) throws {
    let rank = world.rank
    let embed = "model.embed_tokens.weight", upProj = "model.layers.0.mlp.up_proj.weight"
    try check("checkpoint-round-trip", world, log) {
        try saveCheckpoint(world, directory: directory, step: 1, keep: 0, large: false)
        let reader = try CheckpointReader(stepDirectory: directory + "/step_00000001")
        try reader.verify()
        try checkLoaded(reader, rank: rank, size: 1, large: false)
        try expect("checkpoint-latest-file", try String(contentsOfFile: directory + "/latest", encoding: .utf8), "step_00000001\n", rank: rank)
    }
    try check("checkpoint-bad-requests", world, log) {
        let reader = try CheckpointReader(stepDirectory: directory + "/step_00000001")
        var values = [Float](repeating: 0, count: 2)
        try expectCheckpointError("unknown-tensor", .unknownTensor, mentioning: ["no tensor model.missing", "step_00000001"]) {
            try values.withUnsafeMutableBufferPointer { try reader.read(name: "model.missing", elements: 0..<2, into: $0) }
        }
        try expectCheckpointError("outside", .rangeOutsideTensor, mentioning: ["elements 1000..<1002 are outside tensor \(embed) of 1001 elements"]) {
            try values.withUnsafeMutableBufferPointer { try reader.read(name: embed, elements: 1000..<1002, into: $0) }
        }
    }
    /// Saves step 2 into `directory` and flips a byte in the middle of up_proj's last frame.
    func saveAndFlipAByte(in directory: String, compression: CheckpointCompression) throws -> (step: String, slice: CheckpointIndex.Slice) {
        try saveCheckpoint(world, directory: directory, step: 2, keep: 0, large: false, compression: compression)
        let step = directory + "/step_00000002"
        let index = try CheckpointReader(stepDirectory: step).index
        let slice = try expectSome(index.tensors.first { $0.name == upProj }?.slices.last, "up_proj slice")
        let path = step + "/" + slice.file
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[slice.offset + slice.length / 2] ^= 0x10
        try bytes.write(to: URL(fileURLWithPath: path))
        return (step, slice)
    }
    try check("checkpoint-flipped-byte", world, log) {
        let (step, slice) = try saveAndFlipAByte(in: directory, compression: .zstd)
        let reader = try CheckpointReader(stepDirectory: step)
        let pieces = ["rank_00000.bin", "tensor \(upProj) elements \(slice.start)..<\(slice.end)"]
        try expectCheckpointError("flipped-verify", .corruptFrame, mentioning: pieces) { try reader.verify() }
        try expectCheckpointError("flipped-read", .corruptFrame, mentioning: pieces) { _ = try reader.read(name: upProj) }
        // Other tensors in the same file still load.
        try expect("flipped-other", try reader.read(name: embed).count, 1001, rank: rank)
    }
    try check("checkpoint-flipped-stored-byte", world, log) {
        // A stored (uncompressed) frame has no zstd checksum: the index's CRC-32C catches the flip.
        let (step, slice) = try saveAndFlipAByte(in: directory + "/stored", compression: CheckpointCompression.none)
        try expect("stored-length", slice.length, 13 + 3 + slice.bytes, rank: rank)
        let reader = try CheckpointReader(stepDirectory: step)
        let pieces = ["rank_00000.bin fails its checksum", "tensor \(upProj) elements \(slice.start)..<\(slice.end)"]
        try expectCheckpointError("stored-flipped-verify", .checksumMismatch, mentioning: pieces) { try reader.verify() }
        try expect("stored-other", try reader.read(name: embed).count, 1001, rank: rank)
    }
    try check("checkpoint-checksum-mismatch", world, log) {
        try saveCheckpoint(world, directory: directory, step: 3, keep: 0, large: false)
        let step = directory + "/step_00000003"
        var index = try CheckpointReader(stepDirectory: step).index
        let t = try expectSome(index.tensors.firstIndex { $0.name == embed }, "embed")
        index.tensors[t].slices[0].crc32c ^= 1
        try index.encoded().write(to: URL(fileURLWithPath: step + "/index.json"))
        let reader = try CheckpointReader(stepDirectory: step)
        let pieces = ["rank_00000.bin fails its checksum", "tensor \(embed) elements 0..<1001"]
        try expectCheckpointError("checksum-verify", .checksumMismatch, mentioning: pieces) { try reader.verify() }
        try expectCheckpointError("checksum-read", .checksumMismatch, mentioning: pieces) { _ = try reader.read(name: embed) }
    }
    try check("checkpoint-truncated", world, log) {
        try saveCheckpoint(world, directory: directory, step: 4, keep: 0, large: false)
        let step = directory + "/step_00000004"
        let path = step + "/rank_00000.bin"
        let size = try expectSome(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int, "size")
        try expect("truncate", truncate(path, off_t(size / 2)), 0, rank: rank)
        let reader = try CheckpointReader(stepDirectory: step)
        try expectCheckpointError("truncated-verify", .truncatedFile, mentioning: ["rank_00000.bin is truncated", "tensor "]) { try reader.verify() }
        try expectCheckpointError("truncated-read", .truncatedFile, mentioning: ["rank_00000.bin is truncated", "tensor optimizer.step"]) {
            _ = try reader.read(name: "optimizer.step")
        }
        try FileManager.default.removeItem(atPath: path)
        try expectCheckpointError("missing-verify", .missingFile, mentioning: ["rank_00000.bin is missing"]) { try reader.verify() }
        try expectCheckpointError("missing-read", .missingFile, mentioning: ["rank_00000.bin is missing", "tensor \(embed)"]) { _ = try reader.read(name: embed) }
    }
    try check("checkpoint-latest-fallback", world, log) {
        // latest names step 4 (truncated): with verification, the newest good one is step 1.
        let verified = CheckpointReader.latest(in: directory, verifying: true)
        try expect("fallback-step", verified.reader?.step, 1, rank: rank)
        try expect("fallback-warnings", verified.warnings.count, 3, rank: rank)
        try expect("fallback-warning-names", verified.warnings[0].contains("step_00000004") && verified.warnings[0].contains("rank_00000.bin is missing"), true, rank: rank)
        // Without verification step 4 still opens; an uncommitted step 5 is skipped even when latest names it.
        try saveCheckpoint(world, directory: directory, step: 5, keep: 0, large: false)
        try FileManager.default.removeItem(atPath: directory + "/step_00000005/COMMITTED")
        try expectCheckpointError("not-committed", .notCommitted, mentioning: ["step_00000005 is not committed"]) {
            _ = try CheckpointReader(stepDirectory: directory + "/step_00000005")
        }
        let unverified = CheckpointReader.latest(in: directory)
        try expect("uncommitted-skipped", unverified.reader?.step, 4, rank: rank)
        try expect("uncommitted-warning", unverified.warnings.count == 1 && unverified.warnings[0].contains("step_00000005 is not committed"), true, rank: rank)
        try expect("empty-directory", CheckpointReader.latest(in: directory + "/none").reader == nil, true, rank: rank)
    }
    try check("checkpoint-keep", world, log) {
        try saveCheckpoint(world, directory: directory, step: 6, keep: 2, large: false)
        // Step 5 (uncommitted) is deleted as a leftover; of 1, 2, 3, 4, 6 the newest two stay.
        try expect("keep-remaining", CheckpointFiles.stepDirectories(in: directory).map(\.step), [4, 6], rank: rank)
        try saveCheckpoint(world, directory: directory, step: 7, keep: 2, large: false)
        try expect("keep-remaining-2", CheckpointFiles.stepDirectories(in: directory).map(\.step), [6, 7], rank: rank)
        // Saving a step again replaces it.
        try saveCheckpoint(world, directory: directory, step: 7, keep: 2, large: false)
        let latest = CheckpointReader.latest(in: directory, verifying: true)
        try expect("keep-latest", latest.reader?.step, 7, rank: rank)
        try expect("keep-no-warnings", latest.warnings, [], rank: rank)
    }
}

func expectSome<T>(_ value: T?, _ what: String) throws -> T {
    guard let value else { throw JobError("check failed: no \(what)") }
    return value
}

/// Saves step `step` on every rank (the first half of a resharding check).
func checkpointSave(_ world: Communicator, _ log: Log, directory: String, step: Int) throws {
    try check("checkpoint-save-\(world.size)", world, log) {
        try saveCheckpoint(world, directory: directory, step: step, keep: 0, large: false)
    }
}

/// Loads the latest checkpoint on this run's rank count and checks every element.
func checkpointLoad(_ world: Communicator, _ log: Log, directory: String, step: Int) throws {
    try check("checkpoint-load-\(world.size)", world, log) {
        let latest = CheckpointReader.latest(in: directory)
        let reader = try expectSome(latest.reader, "checkpoint in \(directory)")
        try expect("load-step", reader.step, step, rank: world.rank)
        try reader.verify()
        try checkLoaded(reader, rank: world.rank, size: world.size, large: false)
    }
}

/// One life of a job that is killed: audits what the previous life left (when it left
/// anything), resumes from the latest checkpoint (checking it), then saves step after step
/// while a timer SIGKILLs rank 1 after `delay` microseconds.
func checkpointCrash(_ world: Communicator, _ log: Log, directory: String, delay: Int) throws {
    if FileManager.default.fileExists(atPath: directory + "/latest") { try checkpointAudit(world, log, directory: directory) }
    let latest = CheckpointReader.latest(in: directory, verifying: true)
    var step = 0
    if let reader = latest.reader {
        try checkLoaded(reader, rank: world.rank, size: world.size, large: true)
        step = reader.step
    }
    try world.barrier()
    if world.rank == 1 {
        Thread.detachNewThread {
            usleep(UInt32(delay))
            kill(getpid(), SIGKILL)
        }
    }
    while true {
        step += 1
        try saveCheckpoint(world, directory: directory, step: step, keep: 3, large: true)
        log.info("saved \(step)")
    }
}

/// After crashes: every committed checkpoint is complete and correct, and `latest` names one.
func checkpointAudit(_ world: Communicator, _ log: Log, directory: String) throws {
    try check("checkpoint-audit", world, log) {
        for candidate in CheckpointFiles.stepDirectories(in: directory) where CheckpointFiles.isCommitted(candidate.path) {
            let reader = try CheckpointReader(stepDirectory: candidate.path)
            try reader.verify()
            try checkLoaded(reader, rank: world.rank, size: world.size, large: true)
        }
        let named = try String(contentsOfFile: directory + "/latest", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let reader = try CheckpointReader(stepDirectory: directory + "/" + named)
        try reader.verify()
        let latest = CheckpointReader.latest(in: directory, verifying: true)
        try expect("audit-latest", latest.reader?.step, reader.step, rank: world.rank)
        log.info("latest \(reader.step), committed \(CheckpointFiles.stepDirectories(in: directory).filter { CheckpointFiles.isCommitted($0.path) }.map(\.step))")
    }
}

/// `checkpoint-unit DIR` | `checkpoint-save DIR STEP` | `checkpoint-load DIR STEP` |
/// `checkpoint-crash DIR DELAY_US` | `checkpoint-audit DIR`.
func checkpointChecks(_ world: Communicator, _ log: Log, arguments: [String]) throws {
    guard arguments.count >= 2 else { throw JobError("usage: mpi-checks \(arguments.first ?? "checkpoint-…") DIR [NUMBER]") }
    let directory = arguments[1]
    let number = arguments.count > 2 ? Int(arguments[2]) ?? 0 : 0
    switch arguments[0] {
    case "checkpoint-unit": try checkpointUnitChecks(world, log, directory: directory)
    case "checkpoint-save": try checkpointSave(world, log, directory: directory, step: number)
    case "checkpoint-load": try checkpointLoad(world, log, directory: directory, step: number)
    case "checkpoint-crash": try checkpointCrash(world, log, directory: directory, delay: number)
    default: try checkpointAudit(world, log, directory: directory)
    }
}
