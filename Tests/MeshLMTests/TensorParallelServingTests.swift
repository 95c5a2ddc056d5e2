import Checkpoint
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Model
import Serving
import Testing

/// `meshlm generate` and `meshlm serve` with the model split over ranks (issue 8, item 4): the
/// same greedy tokens and logits as one rank. The model has 4 query heads on 2 KV heads (tp 4
/// replicates each KV head on two ranks) and the byte tokenizer's vocabulary of 259, which
/// splits unevenly over 2 and 4 ranks.
@Suite(.serialized) struct TensorParallelServingTests {
    static let config = LlamaConfig(vocabSize: 259, hiddenSize: 64, intermediateSize: 96, numHiddenLayers: 2,
                                    numAttentionHeads: 4, numKeyValueHeads: 2, maxPositionEmbeddings: 256)

    /// Random weights large enough (σ 0.3) that greedy choices are not near-ties, written as a
    /// committed checkpoint with the offline writer (MPI must not start inside the test process).
    static func writeCheckpoint(tied: Bool = false, seed: UInt64 = 5) throws -> String {
        var config = Self.config
        config.tieWordEmbeddings = tied
        let weights = InferenceWeights.random(config: config, seed: seed)
        for entry in weights.layout.entries where entry.shape.count == 2 {
            let values = weights.parameters.pointer + entry.offset
            for index in 0..<entry.count { values[index] *= 15 }
        }
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("meshlm-tpserve-\(getpid())-\(UUID().uuidString.prefix(8))").path
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let declared = Dictionary(uniqueKeysWithValues: weights.layout.entries.map { ($0.name, $0.shape) })
        return try CheckpointWriter.writeOffline(directory: directory, step: 1, ranks: 1, declared: declared,
                                                 metadata: Data("{}".utf8),
                                                 extraFiles: ["model_config.json": try encoder.encode(weights.config)]) { _ in
            weights.layout.entries.map { entry in
                CheckpointSliceValues(name: entry.name, shape: entry.shape, elements: 0..<entry.count,
                                      values: Array(UnsafeBufferPointer(start: weights.parameters.pointer + entry.offset,
                                                                        count: entry.count)))
            }
        }
    }

    /// A prompt of 45 bytes: with --token-budget 16 its prefill takes three steps, and with
    /// --block-size 4 its block table has a dozen entries.
    static let prompt = "Tensor parallel serving splits heads by rank."

    func generate(ranks: Int, checkpoint: String, logits: String) throws -> Launch {
        let arguments = ["generate", "--checkpoint", checkpoint, "--prompt", Self.prompt, "--max-tokens", "20",
                         "--ignore-eos", "--threads", "1", "--kv-blocks", "64", "--block-size", "4", "--token-budget", "16",
                         "--dump-logits", logits]
        return ranks == 1 ? try Launcher.plain("meshlm", arguments) : try Launcher.mpirun(ranks, "meshlm", arguments)
    }

    static func readLogits(_ path: String) throws -> [Float] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    static func argmaxTokens(_ logits: [Float]) -> [Int] {
        stride(from: 0, to: logits.count, by: config.vocabSize).map { start in
            let row = logits[start..<start + config.vocabSize]
            return row.indices.max { row[$0] < row[$1] }.map { $0 - start } ?? -1
        }
    }

    @Test(arguments: [false, true]) func generateOnTwoAndFourRanksEqualsOneRank(tied: Bool) throws {
        let checkpoint = try Self.writeCheckpoint(tied: tied)
        defer { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: checkpoint).deletingLastPathComponent().path) }
        let referencePath = checkpoint + "/../logits-1.bin"
        let reference = try generate(ranks: 1, checkpoint: checkpoint, logits: referencePath)
        #expect(reference.status == 0, "\(reference.standardError)")
        let expected = try Self.readLogits(referencePath)
        #expect(expected.count == 20 * Self.config.vocabSize)
        for ranks in [2, 4] {
            let path = checkpoint + "/../logits-\(ranks).bin"
            let launch = try generate(ranks: ranks, checkpoint: checkpoint, logits: path)
            #expect(launch.status == 0, "tp \(ranks): \(launch.standardError)")
            #expect(launch.standardOutput == reference.standardOutput, "tp \(ranks) printed other text than one rank")
            let got = try Self.readLogits(path)
            #expect(got.count == expected.count)
            guard got.count == expected.count else { continue }
            #expect(Self.argmaxTokens(got) == Self.argmaxTokens(expected), "tp \(ranks) chose other greedy tokens")
            // Relative to the row's largest logit: summing partial heads in another order moves
            // each logit by rounding only.
            var worst: Float = 0
            for start in stride(from: 0, to: expected.count, by: Self.config.vocabSize) {
                let row = start..<start + Self.config.vocabSize
                let scale = expected[row].map(abs).max() ?? 1
                for index in row { worst = max(worst, abs(got[index] - expected[index]) / scale) }
            }
            print("tensor-parallel generate\(tied ? " (tied embeddings)" : ""), tp \(ranks): 20 greedy tokens as one rank; logits max relative difference \(worst)")
            #expect(worst <= 1e-5, "tp \(ranks)")
        }
    }

    @Test func aModelThatDoesNotSplitIsRefusedWithTheReason() throws {
        let checkpoint = try Self.writeCheckpoint()
        defer { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: checkpoint).deletingLastPathComponent().path) }
        let launch = try Launcher.mpirun(3, "meshlm", ["generate", "--checkpoint", checkpoint, "--prompt", "x", "--threads", "1"])
        #expect(launch.status != 0)
        #expect(launch.standardError.contains("meshlm: error: \(checkpoint)/model_config.json: cannot split the model over 3 tensor-parallel ranks: tensor parallel degree tp 3 must divide num_attention_heads 4 (start a number of ranks with mpirun -np that fits)"),
                "\(launch.standardError)")
    }

    /// `serve --lora` keeps adapters unmerged on one rank: under mpirun -np 2 it stops before
    /// loading, saying what to do instead.
    @Test func loraAdaptersAreRefusedUnderTensorParallelism() throws {
        let checkpoint = try Self.writeCheckpoint()
        defer { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: checkpoint).deletingLastPathComponent().path) }
        let launch = try Launcher.mpirun(2, "meshlm", ["serve", "--checkpoint", checkpoint, "--port", "0", "--threads", "1",
                                                       "--lora", "a=\(checkpoint)"])
        #expect(launch.status != 0)
        #expect(launch.standardError.contains("meshlm: error: --lora serves adapters unmerged on one rank; tensor-parallel serving (mpirun -np 2) cannot take them yet: start one rank, or merge an adapter into its base with `meshlm ckpt merge-lora` and serve that checkpoint on several ranks"),
                "\(launch.standardError)")
    }

    /// In-place weight replacement (what a trainer does between rollouts): every rank takes its
    /// slices of the new whole model while the followers are out of `follow`, and the engine's
    /// prefix cache (the 45-byte prompt's 11 full blocks) is dropped, so the second generation
    /// is the new model's, as one rank loading the new checkpoint prints it.
    @Test func weightReplacementOnTwoRanksGivesTheNewModel() throws {
        let old = try Self.writeCheckpoint(seed: 5), new = try Self.writeCheckpoint(seed: 6)
        defer {
            for checkpoint in [old, new] {
                try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: checkpoint).deletingLastPathComponent().path)
            }
        }
        func generate(ranks: Int, _ checkpoint: String, _ extra: [String] = []) throws -> Launch {
            let arguments = ["generate", "--checkpoint", checkpoint, "--prompt", Self.prompt, "--max-tokens", "12", "--ignore-eos",
                             "--threads", "1", "--kv-blocks", "64", "--block-size", "4", "--token-budget", "16"] + extra
            return ranks == 1 ? try Launcher.plain("meshlm", arguments) : try Launcher.mpirun(ranks, "meshlm", arguments)
        }
        let oldText = try generate(ranks: 1, old), newText = try generate(ranks: 1, new)
        #expect(oldText.status == 0 && newText.status == 0, "\(oldText.standardError)\(newText.standardError)")
        try #require(oldText.standardOutput != newText.standardOutput, "the two models must disagree for the test to mean anything")
        for ranks in [1, 2] {
            let replaced = try generate(ranks: ranks, old, ["--replace-weights-from", new])
            #expect(replaced.status == 0, "tp \(ranks): \(replaced.standardError)")
            #expect(replaced.standardOutput == oldText.standardOutput + newText.standardOutput, "tp \(ranks)")
        }
    }

    /// `meshlm serve` under mpirun -np 2 answers like one rank and exits 0 when rank 0 gets SIGTERM.
    @Test func serveOnTwoRanksAnswersAsOneRankAndStopsOnSIGTERM() async throws {
        let checkpoint = try Self.writeCheckpoint()
        defer { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: checkpoint).deletingLastPathComponent().path) }
        let reference = try Launcher.plain("meshlm", ["generate", "--checkpoint", checkpoint, "--prompt", Self.prompt,
                                                      "--max-tokens", "12", "--ignore-eos", "--threads", "1"])
        #expect(reference.status == 0, "\(reference.standardError)")
        let expectedText = String(reference.standardOutput.dropLast())  // generate ends with a newline

        let server = try TensorParallelServer(ranks: 2, checkpoint: checkpoint)
        let body = #"{"model": "meshlm", "prompt": "\#(Self.prompt)", "max_tokens": 12, "temperature": 0, "ignore_eos": true}"#
        // Two at once: the followers run batches of two sequences.
        async let first = server.complete(body)
        async let second = server.complete(body)
        let (firstText, secondText) = try await (first, second)
        #expect(firstText == expectedText)
        #expect(secondText == expectedText)
        // n = 3 sampled: the forked samples recompute the prompt's partial last block (45 bytes
        // on 4-byte blocks) through ordinary batches, so the followers' KV stays in step; each
        // choice is one rank's text for its seed.
        let sampled = #"{"model": "meshlm", "prompt": "\#(Self.prompt)", "max_tokens": 12, "temperature": 1, "seed": 7, "n": 3, "ignore_eos": true}"#
        let choices = try await server.completeChoices(sampled)
        #expect(choices.count == 3)
        for (index, text) in choices.enumerated() {
            let seed = SamplingParameters.sampleSeed(requestSeed: 7, index: index)
            let alone = try Launcher.plain("meshlm", ["generate", "--checkpoint", checkpoint, "--prompt", Self.prompt, "--max-tokens", "12",
                                                      "--ignore-eos", "--threads", "1", "--temperature", "1", "--seed", "\(seed)"])
            #expect(text + "\n" == alone.standardOutput, "choice \(index)")
        }
        let status = try server.terminateRankZero()
        #expect(status == 0, "\(server.output)")
        #expect(server.output.contains("drained; exiting"), "\(server.output)")
    }

    /// A follower that dies ends the job instead of leaving rank 0 waiting in a collective.
    @Test func aFollowerThatDiesEndsTheJob() async throws {
        let checkpoint = try Self.writeCheckpoint()
        defer { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: checkpoint).deletingLastPathComponent().path) }
        let server = try TensorParallelServer(ranks: 2, checkpoint: checkpoint)
        let body = #"{"model": "meshlm", "prompt": "x", "max_tokens": 4, "temperature": 0}"#
        _ = try await server.complete(body)
        let status = try server.signal(rank: 1, SIGKILL)
        #expect(status != 0, "\(server.output)")
    }
}

/// `mpirun -np N meshlm serve` on 127.0.0.1 with a port the OS picks.
final class TensorParallelServer: @unchecked Sendable {
    let process = Process()
    let port: Int
    private let collected = Locked(Data())

    init(ranks: Int, checkpoint: String) throws {
        let executable = Launcher.productsDirectory.appendingPathComponent("meshlm").path
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["mpirun", "-np", "\(ranks)", "--oversubscribe", "--allow-run-as-root", "-x", "OPENBLAS_NUM_THREADS=1",
                             executable, "serve", "--checkpoint", checkpoint, "--port", "0", "--threads", "1",
                             "--kv-blocks", "64", "--block-size", "4"]
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_NUM_THREADS"] = "1"
        environment.removeValue(forKey: "OPENBLAS_CORETYPE")
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let handle = output.fileHandleForReading
        let deadline = Date().addingTimeInterval(60)
        var port: Int?
        while port == nil && Date() < deadline {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            collected.set(collected.get() + chunk)
            let text = String(decoding: collected.get(), as: UTF8.self)
            if let range = text.range(of: "127.0.0.1:") { port = Int(text[range.upperBound...].prefix { $0.isNumber }) }
        }
        guard let port else {
            process.terminate()
            throw TensorParallelServerError("mpirun meshlm serve did not report its port: \(String(decoding: collected.get(), as: UTF8.self))")
        }
        self.port = port
        // Keep reading so the job never blocks on a full pipe.
        DispatchQueue.global().async { [collected] in
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                collected.set(collected.get() + chunk)
            }
        }
    }

    var output: String { String(decoding: collected.get(), as: UTF8.self) }

    /// The text of a non-streaming completion.
    func complete(_ body: String) async throws -> String {
        guard let text = try await completeChoices(body).first else { throw TensorParallelServerError("no choice") }
        return text
    }

    /// The texts of a non-streaming completion's choices, in index order.
    func completeChoices(_ body: String) async throws -> [String] {
        guard let url = URL(string: "http://127.0.0.1:\(port)/v1/completions") else { throw TensorParallelServerError("bad port") }
        var request = URLRequest(url: url)
        request.httpMethod = "POST"
        request.timeoutInterval = 60
        request.httpBody = Data(body.utf8)
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        let (data, response) = try await URLSession.shared.data(for: request)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard status == 200,
              let json = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let choices = json["choices"] as? [[String: Any]] else {
            throw TensorParallelServerError("status \(status): \(String(decoding: data, as: UTF8.self))")
        }
        return choices.map { $0["text"] as? String ?? "" }
    }

    /// Sends SIGTERM to rank 0 alone and returns mpirun's exit status.
    func terminateRankZero() throws -> Int32 { try signal(rank: 0, SIGTERM) }

    /// Sends `signal` to one rank (found among mpirun's children by its OMPI_COMM_WORLD_RANK)
    /// and returns mpirun's exit status; kills the job after 60 s.
    func signal(rank: Int, _ signal: Int32) throws -> Int32 {
        let children = try FileManager.default.contentsOfDirectory(atPath: "/proc").compactMap(Int32.init).filter { pid in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && Int32(fields[1]) == process.processIdentifier
        }
        let target = children.first { pid in
            let environment = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/environ"))) ?? Data()
            return environment.split(separator: 0).contains { String(decoding: $0, as: UTF8.self) == "OMPI_COMM_WORLD_RANK=\(rank)" }
        }
        guard let target else {
            process.terminate()
            throw TensorParallelServerError("rank \(rank) not found among mpirun's children \(children)")
        }
        kill(target, signal)
        let deadline = Date().addingTimeInterval(60)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            Issue.record("mpirun meshlm serve did not exit within 60 s of signal \(signal) to rank \(rank)")
            kill(process.processIdentifier, SIGKILL)
        }
        process.waitUntilExit()
        usleep(100_000)  // the reader drains the last lines
        return process.terminationStatus
    }
}

struct TensorParallelServerError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
