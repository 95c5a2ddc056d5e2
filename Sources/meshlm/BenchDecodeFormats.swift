import ArgumentParser
import Foundation
import Model
import Runtime
import Serving
import Tensors

/// The weight formats `bench decode --formats` compares on the same weights.
enum DecodeWeightFormat: String, CaseIterable, ExpressibleByArgument {
    case f32, q8_0, q4_0

    var quantized: QuantizedFormat? { QuantizedFormat(rawValue: rawValue) }
}

extension BenchDecodeCommand {
    /// Decode at batch 1 and at each concurrency for every format in `formats`, from copies of
    /// the same f32 weights quantized in process (as `ckpt quantize` stores them; the head in
    /// q8_0), measured alternately (every format once per repeat, in turn) so load from other
    /// processes falls on all of them alike. Reports the median and range of the repeats, the
    /// weight bytes a token reads, the fraction of the STREAM bound for those bytes, and the
    /// bytes the weights hold in memory.
    func measureFormats(_ formats: [DecodeWeightFormat], weights: InferenceWeights, tokens: Int, repeats: Int,
                        threads: KernelThreads, stream: Double, json: Bool, log: Log) throws {
        var variants: [(format: DecodeWeightFormat, weights: InferenceWeights)] = []
        for format in formats {
            guard let quantized = format.quantized else { variants.append((format, weights)); continue }
            if let problem = CheckpointQuantization.blockProblem(weights.config, format: quantized) { throw JobError("--formats: \(problem)") }
            let copy = InferenceWeights(config: weights.config)
            copy.parameters.pointer.update(from: weights.parameters.pointer, count: weights.layout.count)
            copy.quantize(quantized, head: .q8_0, threads: threads)
            variants.append((format, copy))
        }
        var report = BenchReport(bench: "decode_formats",
                                 columns: ["format", "concurrency", "tok/s median", "range", "MB/token", "of STREAM bound",
                                           "vs f32", "vs batch 1", "weights MB"],
                                 json: json, log: log)
        var singles: [DecodeWeightFormat: Double] = [:]
        for users in [1] + concurrency.filter({ $0 > 1 }) {
            var samples: [DecodeWeightFormat: [Double]] = [:]
            for _ in 0..<repeats {
                for variant in variants {
                    let sample = try measureLoad(weights: variant.weights, users: users, tokens: tokens, threads: threads, tensorGroup: nil)
                    samples[variant.format, default: []].append(users == 1 ? sample.decodeTokensPerSecond : sample.tokensPerSecond)
                }
            }
            for variant in variants {
                let rates = samples[variant.format, default: []].sorted()
                let median = rates[rates.count / 2]
                if users == 1 { singles[variant.format] = median }
                let bytes = Double(variant.weights.bytesReadPerToken)
                let bound = stream * 1e9 / bytes
                let f32Rate = samples[.f32].map { $0.sorted()[$0.count / 2] }
                let resident = variant.weights.residentWeightBytes
                report.add(cells: [variant.format.rawValue, "\(users)", String(format: "%.1f", median),
                                   String(format: "%.1f–%.1f", rates.first!, rates.last!),
                                   String(format: "%.1f", bytes / 1e6),
                                   users == 1 ? String(format: "%.0f%%", 100 * median / bound) : "",
                                   f32Rate.map { String(format: "%.2f×", median / $0) } ?? "",
                                   String(format: "%.2f×", median / (singles[variant.format] ?? median)),
                                   String(format: "%.0f", Double(resident) / 1e6)],
                           fields: ["format": variant.format.rawValue, "concurrency": users, "tokens_per_s": median,
                                    "tokens_per_s_min": rates.first!, "tokens_per_s_max": rates.last!, "repeats": rates.count,
                                    "bytes_per_token": bytes, "stream_gb_per_s": stream, "stream_bound_tokens_per_s": bound,
                                    "fraction_of_stream": users == 1 ? median / bound : 0,
                                    "speedup_vs_f32": f32Rate.map { median / $0 } ?? 0,
                                    "speedup_vs_batch1": median / (singles[variant.format] ?? median),
                                    "weight_bytes": resident, "threads": threads.count, "generated_tokens": tokens])
            }
        }
        report.printTable()
    }
}
