import ArgumentParser
import Runtime
import Tensors
import Training

struct BenchKernelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Each training kernel's GB/s or GFLOP/s next to STREAM bandwidth and the sgemm rate measured in the same run.",
        discussion: """
            Memory-bound kernels are compared with a STREAM triad on arrays far beyond the last-level
            cache (bytes counted as STREAM counts them: each array read or written once, no
            write-allocate traffic); attention and matmul are compared with sgemm at n = 1024 on
            the same threads, timed alternately with each of them (batch for batch), so a machine
            whose load changes during the run slows kernel and reference alike. Timing is per
            call, median and range over --repeats.
            """)

    @OptionGroup var job: JobOptions
    @OptionGroup var bench: BenchOptions
    @Option(parsing: .unconditional, help: "Elements per array for the memory-bound kernels (default 16M = 64 MB, far beyond L3).") var elements = 1 << 24
    @Option(parsing: .unconditional, help: "Compute threads for the kernels (default 1: one rank per core).") var kernelThreads = 1

    func run() throws {
        try job.runJob { context in
            printMachineReport(context, json: bench.json)
            let threads = KernelThreads(count: kernelThreads)
            let seconds = bench.quick ? 0.05 : 0.2
            let repeats = bench.repeats
            func time(_ body: () -> Void) -> Timing { Timing.measure(repeats: repeats, minimumSeconds: seconds, body) }

            // References measured in this run, with the same thread count as the kernels.
            let stream = StreamBandwidth.measure(elements: elements, threads: threads, time: time)
            let sgemm = SgemmReference(threads: threads)
            if !bench.json { context.log.info(String(format: "reference: STREAM copy %.1f GB/s, triad %.1f GB/s; sgemm n=1024 on the same %d thread%@, timed beside each compute kernel",
                                    stream.copy, stream.triad, kernelThreads, kernelThreads == 1 ? "" : "s")) }
            var report = BenchReport(bench: "kernels",
                                     columns: ["kernel", "shape", "ms", "achieved median (range)", "unit", "reference", "of reference"],
                                     json: bench.json, log: context.log)
            func bandwidth(_ name: String, _ shape: String, bytes: Double, _ timing: Timing) {
                let rate = timing.rate(bytes / 1e9)
                report.add(cells: [name, shape, String(format: "%.3f", timing.median * 1e3), formatRange(rate), "GB/s",
                                   String(format: "%.1f", stream.triad), String(format: "%.0f%%", 100 * rate.median / stream.triad)],
                           fields: ["kernel": name, "shape": shape, "threads": kernelThreads, "ms": timing.median * 1e3,
                                    "gb_per_s": rate.median, "gb_per_s_min": rate.low, "gb_per_s_max": rate.high,
                                    "stream_gb_per_s": stream.triad, "fraction_of_stream": rate.median / stream.triad])
            }
            func compute(_ name: String, _ shape: String, flops: Double, _ body: () -> Void) {
                let (timing, reference) = Timing.measureAlternately(repeats: repeats, minimumSeconds: seconds, body, reference: sgemm.run)
                let rate = timing.rate(flops / 1e9), sgemmRate = reference.rate(sgemm.flops / 1e9).median
                report.add(cells: [name, shape, String(format: "%.3f", timing.median * 1e3), formatRange(rate), "GFLOP/s",
                                   String(format: "%.1f", sgemmRate), String(format: "%.0f%%", 100 * rate.median / sgemmRate)],
                           fields: ["kernel": name, "shape": shape, "threads": kernelThreads, "ms": timing.median * 1e3,
                                    "gflops": rate.median, "gflops_min": rate.low, "gflops_max": rate.high,
                                    "sgemm_gflops": sgemmRate, "fraction_of_sgemm": rate.median / sgemmRate])
            }

            let n = Double(elements)
            let hidden = 1024, rows = elements / hidden
            let a = random(elements, seed: 1), b = random(elements, seed: 2), c = random(elements, seed: 3)
            let d = random(elements, seed: 4), e = random(elements, seed: 5)
            let weight = random(hidden, seed: 6)
            let rstd = Tensor(shape: [rows])

            bandwidth("rmsnorm.forward", "\(rows)×\(hidden)", bytes: 8 * n, time {
                RMSNorm.forward(output: b.pointer, rstd: rstd.pointer, input: a.pointer, weight: weight.pointer,
                                rowCount: rows, hiddenSize: hidden, epsilon: 1e-5, threads: threads)
            })
            let weightGradient = Tensor(shape: [hidden])
            bandwidth("rmsnorm.backward", "\(rows)×\(hidden)", bytes: 16 * n, time {
                RMSNorm.backward(inputGradient: c.pointer, weightGradient: weightGradient.pointer, outputGradient: b.pointer,
                                 rstd: rstd.pointer, input: a.pointer, weight: weight.pointer, rowCount: rows, hiddenSize: hidden, threads: threads)
            })

            let headDimension = 64, headCount = 16, tokens = elements / (headCount * headDimension)
            let table = RoPETable(headDimension: headDimension, positionCount: 4096, theta: 10_000)
            let positions = (0..<tokens).map { Int32($0 % 4096) }
            withIDs(positions) { positions in
                bandwidth("rope.forward", "\(tokens)×\(headCount)×\(headDimension)", bytes: 8 * n, time {
                    RoPE.forward(output: b.pointer, input: a.pointer, positions: positions, table: table,
                                 tokenCount: tokens, headCount: headCount, headDimension: headDimension, threads: threads)
                })
                bandwidth("rope.backward", "\(tokens)×\(headCount)×\(headDimension)", bytes: 8 * n, time {
                    RoPE.backward(inputGradient: c.pointer, outputGradient: b.pointer, positions: positions, table: table,
                                  tokenCount: tokens, headCount: headCount, headDimension: headDimension, threads: threads)
                })
            }

            bandwidth("swiglu.forward", "\(elements)", bytes: 12 * n, time {
                SwiGLU.forward(output: c.pointer, gate: a.pointer, up: b.pointer, count: elements, threads: threads)
            })
            bandwidth("swiglu.backward", "\(elements)", bytes: 28 * n, time {
                SwiGLU.backward(gateGradient: d.pointer, upGradient: e.pointer, outputGradient: c.pointer,
                                gate: a.pointer, up: b.pointer, count: elements, threads: threads)
            })
            bandwidth("residual.forward", "\(elements)", bytes: 12 * n, time {
                Residual.forward(output: c.pointer, a: a.pointer, b: b.pointer, count: elements, threads: threads)
            })

            let vocabulary = 32_768, logitRows = elements / vocabulary
            let targets = (0..<logitRows).map { Int32(($0 * 7919) % vocabulary) }
            let losses = Tensor(shape: [logitRows]), logSumExp = Tensor(shape: [logitRows])
            let logProbabilityGradient = Tensor(shape: [logitRows])
            logProbabilityGradient.fill(-1 / Float(logitRows))
            withIDs(targets) { targets in
                bandwidth("softmax_cross_entropy.forward", "\(logitRows)×\(vocabulary)", bytes: 4 * n, time {
                    CrossEntropy.forward(losses: losses.pointer, logSumExp: logSumExp.pointer, logits: a.pointer,
                                         targets: targets, rowCount: logitRows, vocabularySize: vocabulary, threads: threads)
                })
                bandwidth("softmax_cross_entropy.backward", "\(logitRows)×\(vocabulary)", bytes: 8 * n, time {
                    CrossEntropy.backward(logitsGradient: b.pointer, logSumExp: logSumExp.pointer, logits: a.pointer,
                                          targets: targets, logProbabilityGradient: logProbabilityGradient.pointer,
                                          rowCount: logitRows, vocabularySize: vocabulary, threads: threads)
                })
            }

            let tableRows = 32_000, embeddingTokens = elements / hidden
            let embeddingTable = random(tableRows * hidden, seed: 7)
            let tokenIds = (0..<embeddingTokens).map { Int32(($0 * 104_729) % tableRows) }
            withIDs(tokenIds) { ids in
                bandwidth("embedding.forward", "\(embeddingTokens)×\(hidden)", bytes: 8 * n, time {
                    Embedding.forward(output: b.pointer, tokens: ids, table: embeddingTable.pointer,
                                      tokenCount: embeddingTokens, vocabularySize: tableRows, hiddenSize: hidden, threads: threads)
                })
            }

            let settings = AdamW.Settings(learningRate: 1e-4, weightDecay: 0.1)
            d.zero(); e.zero()
            var step = 0
            bandwidth("adamw.update", "\(elements)", bytes: 28 * n, time {
                step += 1
                AdamW.update(parameters: a.pointer, firstMoments: d.pointer, secondMoments: e.pointer, gradients: b.pointer,
                             count: elements, step: step, settings: settings, threads: threads)
            })

            // Attention: sequence 512, head dim 64, causal; FLOPs count the score entries the
            // kernel computes (whole diagonal tiles, `ModelFlops.forwardScoreCount`): forward
            // 2 products, backward 5 (it recomputes the scores), each 2·d per entry.
            let batch = 2, sequence = 512, heads = 8, kvHeads = 8, width = 64
            let qkv = batch * sequence * heads * width
            let query = random(qkv, seed: 8), key = random(qkv, seed: 9), value = random(qkv, seed: 10)
            let output = Tensor(shape: [qkv]), outputGradient = random(qkv, seed: 11)
            let attentionLSE = Tensor(shape: [batch * heads * sequence])
            let dq = Tensor(shape: [qkv]), dk = Tensor(shape: [qkv]), dv = Tensor(shape: [qkv])
            let scores = ModelFlops.forwardScoreCount(sequenceLength: sequence, tiling: .default)
            let forwardFlops = Double(batch * heads) * 2 * 2 * Double(width * scores)
            let shape = "b\(batch) t\(sequence) h\(heads) d\(width)"
            compute("attention.forward", shape, flops: forwardFlops) {
                Attention.forward(output: output.pointer, logSumExp: attentionLSE.pointer, query: query.pointer, key: key.pointer,
                                  value: value.pointer, batchSize: batch, sequenceLength: sequence, headCount: heads,
                                  kvHeadCount: kvHeads, headDimension: width, threads: threads)
            }
            compute("attention.forward+backward", shape, flops: 3.5 * forwardFlops) {
                Attention.forward(output: output.pointer, logSumExp: attentionLSE.pointer, query: query.pointer, key: key.pointer,
                                  value: value.pointer, batchSize: batch, sequenceLength: sequence, headCount: heads,
                                  kvHeadCount: kvHeads, headDimension: width, threads: threads)
                Attention.backward(queryGradient: dq.pointer, keyGradient: dk.pointer, valueGradient: dv.pointer,
                                   outputGradient: outputGradient.pointer, logSumExp: attentionLSE.pointer, output: output.pointer,
                                   query: query.pointer, key: key.pointer, value: value.pointer, batchSize: batch,
                                   sequenceLength: sequence, headCount: heads, kvHeadCount: kvHeads, headDimension: width, threads: threads)
            }

            // A linear layer as the model runs it: 2048 tokens, 768 → 2048, forward and backward.
            let tokenRows = 2048, inputs = 768, outputs = 2048
            let x = random(tokenRows * inputs, seed: 12), w = random(outputs * inputs, seed: 13)
            let y = Tensor(shape: [tokenRows * outputs]), dy = random(tokenRows * outputs, seed: 14)
            let dx = Tensor(shape: [tokenRows * inputs]), dw = Tensor(shape: [outputs * inputs])
            let linearFlops = 2 * Double(tokenRows * inputs * outputs)
            compute("matmul.forward", "\(tokenRows)×\(inputs)→\(outputs)", flops: linearFlops) {
                Matmul.forward(output: y.pointer, input: x.pointer, weight: w.pointer, bias: nil, rowCount: tokenRows,
                               inputSize: inputs, outputSize: outputs, threads: threads)
            }
            compute("matmul.backward", "\(tokenRows)×\(inputs)→\(outputs)", flops: 2 * linearFlops) {
                Matmul.backward(inputGradient: dx.pointer, weightGradient: dw.pointer, biasGradient: nil, outputGradient: dy.pointer,
                                input: x.pointer, weight: w.pointer, rowCount: tokenRows, inputSize: inputs, outputSize: outputs, threads: threads)
            }
            // The same layer frozen with a rank-16 LoRA adapter, as a LoRA step runs it: the base
            // product plus the adapter's forward; backward takes the input's gradient through both
            // and the adapter's A and B gradients, not W's. FLOPs count base and adapter.
            let rank = 16
            let loraA = random(rank * inputs, seed: 15), loraB = random(outputs * rank, seed: 16)
            let intermediate = Tensor(shape: [tokenRows * rank]), intermediateGradient = Tensor(shape: [tokenRows * rank])
            let aGradient = Tensor(shape: [rank * inputs]), bGradient = Tensor(shape: [outputs * rank])
            let adapterFlops = 2 * Double(tokenRows * rank * (inputs + outputs))
            let loraShape = "\(tokenRows)×\(inputs)→\(outputs) r\(rank)"
            compute("matmul+lora.forward", loraShape, flops: linearFlops + adapterFlops) {
                LowRankAdapter.forwardBeforeBase(output: y.pointer, intermediate: intermediate.pointer, input: x.pointer,
                                                 a: loraA.pointer, b: loraB.pointer, bias: nil, scaling: 2, rowCount: tokenRows,
                                                 inputSize: inputs, outputSize: outputs, rank: rank, threads: threads)
                Matmul.forward(output: y.pointer, input: x.pointer, weight: w.pointer, bias: nil, rowCount: tokenRows,
                               inputSize: inputs, outputSize: outputs, accumulate: true, threads: threads)
            }
            compute("matmul+lora.backward (W frozen)", loraShape, flops: linearFlops + 2 * adapterFlops) {
                Matmul.backward(inputGradient: dx.pointer, weightGradient: nil, biasGradient: nil, outputGradient: dy.pointer,
                                input: x.pointer, weight: w.pointer, rowCount: tokenRows, inputSize: inputs, outputSize: outputs, threads: threads)
                LowRankAdapter.backward(inputGradient: dx.pointer, aGradient: aGradient.pointer, bGradient: bGradient.pointer,
                                        intermediateGradient: intermediateGradient.pointer, outputGradient: dy.pointer,
                                        intermediate: intermediate.pointer, input: x.pointer, a: loraA.pointer, b: loraB.pointer,
                                        scaling: 2, rowCount: tokenRows, inputSize: inputs, outputSize: outputs, rank: rank,
                                        threads: threads)
            }
            report.printTable()
        }
    }

    /// Runs `body` with a pointer to non-empty token ids.
    private func withIDs(_ ids: [Int32], _ body: (UnsafePointer<Int32>) -> Void) {
        ids.withUnsafeBufferPointer { buffer in
            guard let pointer = buffer.baseAddress else { preconditionFailure("no token ids") }
            body(pointer)
        }
    }

    private func random(_ count: Int, seed: UInt64) -> Tensor {
        let tensor = Tensor(shape: [count])
        var generator = SplitMix64(seed: seed)
        tensor.fillUniform(lower: -1, upper: 1, generator: &generator)
        return tensor
    }

}

/// The compute kernels' reference: sgemm at n = 1024 split over the kernels' threads, as
/// `BLAS.multiply` splits the kernels' own products.
struct SgemmReference {
    let n = 1024
    let threads: KernelThreads
    let a: Tensor, b: Tensor, c: Tensor

    init(threads: KernelThreads) {
        self.threads = threads
        a = Tensor(shape: [n * n])
        b = Tensor(shape: [n * n])
        c = Tensor(shape: [n * n])
        var generator = SplitMix64(seed: 20)
        a.fillUniform(lower: -1, upper: 1, generator: &generator)
        b.fillUniform(lower: -1, upper: 1, generator: &generator)
    }

    var flops: Double { 2 * Double(n * n * n) }

    func run() {
        BLAS.multiply(output: c.pointer, a: a.pointer, b: b.pointer, rowCount: n, columnCount: n, innerCount: n, threads: threads)
    }
}

/// STREAM-style bandwidth of this machine (copy: 2 arrays touched per element, triad: 3), on
/// arrays of `elements` floats each, split over the given threads like the kernels are.
struct StreamBandwidth {
    let copy: Double
    let triad: Double

    static func measure(elements: Int, threads: KernelThreads, time: (() -> Void) -> Timing) -> StreamBandwidth {
        let a = Tensor(shape: [elements]), b = Tensor(shape: [elements]), c = Tensor(shape: [elements])
        a.fill(1); b.fill(2); c.fill(0)
        let x = a.pointer, y = b.pointer, z = c.pointer
        let copy = time {
            threads.parallelFor(0..<elements, minimumChunk: 1 << 16) { range in
                for index in range { z[index] = x[index] }
            }
        }
        let scalar: Float = 3
        let triad = time {
            threads.parallelFor(0..<elements, minimumChunk: 1 << 16) { range in
                for index in range { z[index] = x[index] + scalar * y[index] }
            }
        }
        let bytes = Double(elements * MemoryLayout<Float>.stride)
        return StreamBandwidth(copy: 2 * bytes / copy.median / 1e9, triad: 3 * bytes / triad.median / 1e9)
    }
}
