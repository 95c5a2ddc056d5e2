import ArgumentParser
import Checkpoint
import Foundation
import Model
import Parallel
import Runtime
import Tensors
import Training

struct BenchCheckpointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract: "Step time during an asynchronous checkpoint save vs a normal step; write throughput vs the raw disk; zstd levels.",
        discussion: """
            Trains a model config on seeded random tokens (no data needed). 1) zstd: compresses rank 0's \
            checkpoint share (trained parameters and AdamW moments) at each --levels level: MB/s and \
            ratio. 2) Disk: writes that many bytes of incompressible data with write + fsync into \
            --directory (the raw bandwidth), then a synchronous checkpoint save: throughput = bytes \
            written / (compress + write + fsync) seconds, as a fraction of the raw bandwidth. 3) Async: \
            medians of normal steps and of the steps while an asynchronous save is in flight (the step \
            that stages it pays the copy), --repeats saves. docs/benchmarks.md.
            """)

    @OptionGroup var job: JobOptions
    @OptionGroup var bench: BenchOptions
    @Option(help: "Model config.") var model = "configs/model/124m.yaml"
    @Option(parsing: .unconditional, help: "Sequence length.") var seqLen = 256
    @Option(parsing: .unconditional, help: "Sequences per rank per step.") var microBatch = 2
    @Option(parsing: .unconditional, help: "Normal steps timed.") var steps = 4
    @Option(parsing: .unconditional, help: "Asynchronous saves timed.") var saves = 3
    @Option(parsing: .unconditional, help: "ZeRO stage (0–3).") var zero = 1
    @Option(help: "zstd levels to compare (comma-separated).") var levels = "-5,-1,1,3"
    @Option(parsing: .unconditional, help: "zstd level of the checkpoint saves.") var level = -1
    @Option(help: "Frame compression of the checkpoint saves: auto, zstd or none.") var compression = "auto"
    @Option(name: .customLong("writer-nice"), parsing: .unconditional, help: "Nice value of the background writer thread (with --writer-priority nice).") var writerNice = 10
    @Option(name: .customLong("writer-priority"), help: "How the background writer yields to training: idle (SCHED_IDLE) or nice.") var writerPriority = "idle"
    @Option(name: .customLong("writer-duty-cycle"), parsing: .unconditional, help: "Share of wall time the background writer works (0 < share ≤ 1).") var writerDutyCycle = 0.25
    @Flag(name: .customLong("eager-copy"), help: "Copy the state at the save's step boundary instead of in the next optimizer step (the earlier behaviour).") var eagerCopy = false
    @Option(help: "Where checkpoints are written (a real disk, not tmpfs, for the bandwidth figure).") var directory = "/tmp/meshlm-bench-checkpoint"

    func run() throws {
        try job.runJob { context in
            let world = context.world, log = context.log
            printMachineReport(context, json: bench.json)
            let yaml = """
                model: \(model)
                run: {dir: \(directory)}
                train: {steps: 1000, seq_len: \(seqLen), global_batch_size: \(microBatch * world.size), micro_batch_size: \(microBatch)}
                optimizer: {lr: 1.0e-4, warmup_steps: 0}
                data: {train: synthetic}
                parallel: {zero_stage: \(zero)}
                checkpoint: {interval: 1000, keep: 1, zstd_level: \(level), compression: \(compression), writer_nice: \(writerNice), writer_priority: \(writerPriority), writer_duty_cycle: \(writerDutyCycle)}
                """
            let config = try world.collectively {
                try ConfigLoader.decode(PretrainConfig.self, yaml: yaml, source: "bench checkpoint", includes: ["model"])
            }
            let trainer = try world.collectively {
                let dims = try ParallelDims(worldSize: world.size, pipelineDegree: 1, dataDegree: nil, contextDegree: 1,
                                            tensorDegree: 1, expertDegree: 1)
                return try Trainer(config: config, mesh: try DeviceMesh(world: world, dims: dims),
                                      threads: KernelThreads(count: context.threads), log: log)
            }
            var generator = SplitMix64(seed: 42, stream: UInt64(world.rank))
            func batch() -> [MicroBatch] {
                let count = microBatch * seqLen
                var tokens = [Int32](repeating: 0, count: count + 1)
                for index in tokens.indices { tokens[index] = Int32(generator.next() % UInt64(config.model.vocabSize)) }
                return [MicroBatch(tokens: Array(tokens[..<count]), targets: Array(tokens[1...]), positions: (0..<count).map { Int32($0 % seqLen) },
                                   sequenceLength: seqLen)]
            }
            var step = 0
            func timedStep() throws -> Double {
                try world.barrier()
                let start = monotonicSeconds()
                _ = try trainer.step(step, batches: batch())
                step += 1
                return try world.allreduce(monotonicSeconds() - start, .max)
            }
            // Two warm-up steps: the moments are non-zero, as in a real checkpoint.
            _ = try timedStep()
            _ = try timedStep()
            var report = BenchReport(bench: "checkpoint", columns: ["measure", "value", "detail"], json: bench.json, log: log)

            // 1. zstd levels on this rank's share.
            var share: [Float] = []
            for kind in DataParallelParameters.StateKind.allCases {
                for slice in trainer.parameters.ownedSlices(kind) { share += UnsafeBufferPointer(start: slice.pointer, count: slice.elements.count) }
            }
            let shareBytes = share.count * 4
            for text in levels.split(separator: ",") {
                guard let zstdLevel = Int32(text.trimmingCharacters(in: .whitespaces)) else { throw ValidationError("--levels: \(text) is not a number") }
                var seconds: [Double] = [], compressed = 0
                for _ in 0..<3 {
                    let start = monotonicSeconds()
                    compressed = try share.withUnsafeBytes { try Zstd.compress($0, level: zstdLevel).count }
                    seconds.append(monotonicSeconds() - start)
                }
                let rate = Double(shareBytes) / median(seconds) / 1e6
                report.add(cells: ["zstd level \(zstdLevel)", String(format: "%.0f MB/s", rate), String(format: "ratio %.3f on %.0f MB (one thread)", Double(shareBytes) / Double(compressed), Double(shareBytes) / 1e6)],
                           fields: ["measure": "zstd", "level": Int(zstdLevel), "mb_per_s": rate, "ratio": Double(shareBytes) / Double(compressed), "bytes": shareBytes])
            }

            // 2. Raw disk bandwidth vs a synchronous save, same bytes, same directory.
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            var rawRates: [Double] = []
            var noise = [UInt8](repeating: 0, count: shareBytes)
            for index in noise.indices { noise[index] = UInt8(truncatingIfNeeded: generator.next()) }
            for repeatIndex in 0..<3 {
                let path = directory + "/raw-\(world.rank)-\(repeatIndex).bin"
                try world.barrier()
                let start = monotonicSeconds()
                try writeAndSync(noise, to: path)
                rawRates.append(Double(shareBytes) / (monotonicSeconds() - start))
                unlink(path)
            }
            let raw = median(rawRates)
            var saveRates: [Double] = [], compressedRates: [Double] = [], storedShares: [Double] = []
            for _ in 0..<3 {
                let (writer, metadata, _) = try trainer.stageCheckpoint(nextStep: step)
                try writer.commit(metadata: metadata, keep: 1)
                saveRates.append(Double(writer.stagedBytes) / writer.writeSeconds)
                compressedRates.append(Double(writer.writtenBytes) / writer.writeSeconds)
                let (compressed, stored) = writer.frameCounts
                storedShares.append(Double(stored) / Double(max(1, compressed + stored)))
            }
            let save = median(saveRates), written = median(compressedRates)
            report.add(cells: ["raw disk write (write + fsync)", String(format: "%.0f MB/s", raw / 1e6), "\(shareBytes / 1_000_000) MB incompressible, median of 3, \(directory)"],
                           fields: ["measure": "raw_disk", "mb_per_s": raw / 1e6])
            report.add(cells: ["checkpoint save (\(compression), level \(level))", String(format: "%.0f MB/s", save / 1e6),
                               String(format: "%.0f%% of raw (state bytes per second); %.0f MB/s of file bytes; %.0f%% of frames stored raw (median)",
                                      100 * save / raw, written / 1e6, 100 * median(storedShares))],
                       fields: ["measure": "save", "compression": compression, "mb_per_s": save / 1e6, "file_mb_per_s": written / 1e6,
                                "fraction_of_raw": save / raw, "stored_frame_share": median(storedShares)])

            // 3. Step time with and without a save in flight.
            var normal: [Double] = []
            for _ in 0..<steps { normal.append(try timedStep()) }
            let saver = CheckpointSaver(trainer: trainer, extras: CheckpointExtras(), asynchronous: true)
            saver.copiesLazily = !eagerCopy
            var during: [Double] = [], stepsPerSave: [Int] = [], staging: [Double] = []
            for _ in 0..<saves {
                try world.barrier()
                let start = monotonicSeconds()
                try saver.save(nextStep: step)
                var seconds = try world.allreduce(monotonicSeconds() - start, .max)
                var count = 0
                while true {
                    let pollStart = monotonicSeconds()
                    let committed = try saver.commitIfReady()
                    seconds += try world.allreduce(monotonicSeconds() - pollStart, .max)
                    if committed != nil || count > 100 { break }
                    seconds += try timedStep()
                    // The boundary that stages the save plus the step whose optimizer copies it.
                    if count == 0 { staging.append(seconds) }
                    during.append(seconds)
                    seconds = 0
                    count += 1
                }
                stepsPerSave.append(count)
                // Steps after the commit, so the next save starts from a quiet machine.
                normal.append(try timedStep())
            }
            try saver.finish()
            let base = median(normal), busy = median(during), worst = during.max() ?? 0, stagingStep = median(staging)
            report.add(cells: ["normal step", String(format: "%.0f ms", base * 1e3), "median of \(normal.count)"],
                       fields: ["measure": "normal_step", "ms": base * 1e3])
            report.add(cells: ["step during async save", String(format: "%.0f ms (%.2f×)", busy * 1e3, busy / base),
                               String(format: "median of %d steps over %d saves (%@ steps per save); worst %.2f×",
                                      during.count, saves, stepsPerSave.map(String.init).joined(separator: "/"), worst / base)],
                       fields: ["measure": "async_step", "ms": busy * 1e3, "ratio": busy / base, "worst_ratio": worst / base])
            report.add(cells: ["staging step", String(format: "%.0f ms (%.2f×)", stagingStep * 1e3, stagingStep / base),
                               String(format: "median of %d: the save's boundary + the step that copies (%@)", staging.count,
                                      eagerCopy ? "eager: copied at the boundary" : "lazy: in its optimizer update")],
                       fields: ["measure": "staging_step", "ms": stagingStep * 1e3, "ratio": stagingStep / base])
            report.printTable()
            if !bench.json {
                log.info(String(format: "bench checkpoint: %.0f parameters, %d rank(s) × %d thread(s); step during save %.2f× normal; save %.0f%% of raw disk bandwidth",
                                Double(config.model.parameterCount), world.size, context.threads, busy / base, 100 * save / raw))
            }
        }
    }

    private func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

    private func writeAndSync(_ bytes: [UInt8], to path: String) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw JobError("cannot create \(path)") }
        defer { close(descriptor) }
        var written = 0
        try bytes.withUnsafeBytes { raw in
            while written < raw.count {
                guard let base = raw.baseAddress else { return }
                let result = write(descriptor, base + written, min(raw.count - written, 1 << 24))
                guard result > 0 else { throw JobError("cannot write \(path)") }
                written += result
            }
        }
        guard fsync(descriptor) == 0 else { throw JobError("cannot fsync \(path)") }
    }
}
