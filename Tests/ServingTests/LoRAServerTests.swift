import Checkpoint
import Foundation
import Model
import Serving
import Testing
import Training

/// `meshlm serve --lora NAME=DIR`: requests choose the base or an adapter by `model`; the
/// server lists, counts and refuses as docs/serving.md ("Serving LoRA adapters") says.
@Suite(.serialized) struct LoRAServerTests {
    init() { useSingleThreadedBLAS() }

    /// Adapter directories over `serverWeights()`, the base `ServerProcess` serves: a MeshLM
    /// run `a`, the same adapter `b` as a MeshLM checkpoint and `peft` as PEFT's directory.
    struct Adapters {
        let directory = temporaryDirectory("lora-adapters")
        let run: String
        let meshlmB: String
        let peftB: String

        init() throws {
            let base = serverWeights()
            run = directory + "/run-a"
            _ = try writeLoRACheckpoint(base: base, lora: LoRAConfig(rank: 4, alpha: 8, targets: [.query, .value, .down]),
                                        seed: 31, directory: run + "/checkpoints")
            let loraB = LoRAConfig(rank: 2, alpha: 4, targets: Projection.allCases)
            meshlmB = try writeLoRACheckpoint(base: base, lora: loraB, seed: 32, directory: directory + "/run-b/checkpoints")
            peftB = directory + "/peft-b"
            try PeftAdapter.export(try CheckpointReader(stepDirectory: meshlmB), lora: loraB, model: base.config, to: peftB)
        }

        func remove() { try? FileManager.default.removeItem(atPath: directory) }
    }

    func object(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "\(text)")
    }

    /// A labelled series from /metrics, e.g. `meshlm_lora_requests_total{adapter="a"}`.
    func series(_ server: ServerProcess, _ name: String) async throws -> Int? {
        let (_, text) = try await server.request("/metrics")
        let line = text.split(separator: "\n").first { $0.hasPrefix(name + " ") }
        return line.flatMap { Int($0.split(separator: " ").last!) }
    }

    /// (c) and (d): requests to each adapter and to the base, `/v1/models`, 404 for an unknown
    /// name, per-adapter metrics, and no prefix blocks shared across adapters.
    @Test func servesTwoAdaptersAndTheBase() async throws {
        let adapters = try Adapters()
        defer { adapters.remove() }
        let server = try ServerProcess(extraArguments: ["--lora", "a=\(adapters.run)", "--lora-modules", #"{"name": "peft", "path": "\#(adapters.peftB)"}"#,
                                                        "b=\(adapters.meshlmB)"])
        defer { server.stop() }

        let (modelsStatus, models) = try await server.request("/v1/models")
        #expect(modelsStatus == 200)
        let cards = try #require(try object(models)["data"] as? [[String: Any]])
        #expect(cards.map { $0["id"] as? String } == ["meshlm", "a", "peft", "b"])
        #expect(cards[0]["parent"] == nil && cards[0]["root"] == nil)
        #expect(cards[1]["parent"] as? String == "meshlm" && cards[1]["root"] as? String == adapters.run)
        #expect(cards[2]["parent"] as? String == "meshlm" && cards[2]["root"] as? String == adapters.peftB)

        func complete(_ model: String, _ prompt: String) async throws -> (text: String, logprobs: [Double], model: String?) {
            let (status, body) = try await server.request("/v1/completions", method: "POST", body:
                #"{"model":"\#(model)","prompt":"\#(prompt)","max_tokens":8,"temperature":0,"ignore_eos":true,"logprobs":1}"#)
            #expect(status == 200, "\(body)")
            let response = try object(body)
            let choice = try #require((response["choices"] as? [[String: Any]])?.first)
            let logprobs = (choice["logprobs"] as? [String: Any])?["token_logprobs"] as? [Double] ?? []
            return (choice["text"] as? String ?? "", logprobs, response["model"] as? String)
        }
        let prompt = "The same prompt, three blocks long."
        let base = try await complete("meshlm", prompt)
        let sharedAfterBase = try await server.metric("meshlm_prefix_shared_blocks_total")
        let a = try await complete("a", prompt)
        let peft = try await complete("peft", prompt)
        #expect(try await server.metric("meshlm_prefix_shared_blocks_total") == sharedAfterBase,
                "the same prompt under other adapters must not reuse the base's or each other's blocks")
        let b = try await complete("b", prompt)
        #expect(try await server.metric("meshlm_prefix_shared_blocks_total") == sharedAfterBase)
        let aAgain = try await complete("a", prompt)
        #expect(try await server.metric("meshlm_prefix_shared_blocks_total") == sharedAfterBase + 4,
                "adapter a reuses its own 4 full prompt blocks of 8 tokens")
        #expect(aAgain.text == a.text)
        #expect(a.model == "a" && peft.model == "peft" && base.model == "meshlm")
        #expect(base.logprobs.count == 8 && a.logprobs.count == 8 && b.logprobs.count == 8)
        #expect(base.logprobs != a.logprobs && base.logprobs != b.logprobs && a.logprobs != b.logprobs, "each adapter changes the model")
        // One adapter read from PEFT's directory and from MeshLM's checkpoint computes the same.
        #expect(peft.text == b.text)
        #expect(zip(peft.logprobs, b.logprobs).allSatisfy { abs($0 - $1) <= 1e-5 * max(1, abs($1)) }, "\(peft.logprobs) vs \(b.logprobs)")

        // n samples of an adapter's request fork from its prefill, under the adapter.
        let (samplesStatus, samples) = try await server.request("/v1/completions", method: "POST", body:
            #"{"model":"b","prompt":"\#(prompt)","max_tokens":4,"temperature":0,"ignore_eos":true,"n":2,"logprobs":1}"#)
        #expect(samplesStatus == 200, "\(samples)")
        let sampled = (try object(samples)["choices"] as? [[String: Any]] ?? []).map {
            ($0["logprobs"] as? [String: Any])?["token_logprobs"] as? [Double] ?? []
        }
        #expect(sampled.count == 2 && sampled.allSatisfy { choice in
            choice.count == 4 && zip(choice, b.logprobs).allSatisfy { abs($0 - $1) <= 1e-4 * max(1, abs($1)) }
        }, "\(sampled) vs \(b.logprobs)")

        // Chat uses the base's template for every adapter.
        let (chatStatus, chat) = try await server.request("/v1/chat/completions", method: "POST", body:
            #"{"model":"a","messages":[{"role":"user","content":"Hi"}],"max_tokens":3}"#)
        #expect(chatStatus == 200 && chat.contains(#""model":"a""#), "\(chat)")

        let (missingStatus, missing) = try await server.request("/v1/completions", method: "POST", body: #"{"model":"c","prompt":"x"}"#)
        #expect(missingStatus == 404)
        let error = try #require(try object(missing)["error"] as? [String: Any])
        #expect(error["message"] as? String == "The model 'c' does not exist; this server serves 'meshlm' and the LoRA adapters 'a', 'peft', 'b' (GET /v1/models)")
        #expect(error["code"] as? String == "model_not_found")

        #expect(try await series(server, #"meshlm_lora_requests_total{adapter="a"}"#) == 3)
        #expect(try await series(server, #"meshlm_lora_requests_total{adapter="peft"}"#) == 1)
        #expect(try await series(server, #"meshlm_lora_requests_total{adapter="b"}"#) == 2)
        #expect(try await series(server, #"meshlm_lora_running_sequences{adapter="a"}"#) == 0)
        try await server.expectIdle()
    }

    /// Bad --lora arguments and adapters that cannot be served stop the command with the reason.
    @Test func refusesBadAdapters() throws {
        let adapters = try Adapters()
        defer { adapters.remove() }
        let directory = adapters.directory
        let baseStep = try writeCheckpoint(serverWeights(), directory: directory + "/base/checkpoints")
        func serve(_ lora: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
            let (status, _, error) = try runMeshLM(["serve", "--checkpoint", baseStep, "--port", "0", "--threads", "1"] + lora)
            #expect(status != 0, sourceLocation: sourceLocation)
            return error
        }
        func expectRefusal(_ lora: [String], _ message: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let error = try serve(lora, sourceLocation: sourceLocation)
            #expect(error.contains(message), "\(error)", sourceLocation: sourceLocation)
        }
        try expectRefusal(["--lora", "a"], "--lora a: expected NAME=DIR (the model name requests use, then the adapter's directory)")
        try expectRefusal(["--lora", "=\(adapters.run)"], "--lora =\(adapters.run): expected NAME=DIR")
        try expectRefusal(["--lora", #"{"name": "a"}"#], #"--lora {"name": "a"}: expected NAME=DIR (the model name requests use, then the adapter's directory) or {"name": NAME, "path": DIR}"#)
        try expectRefusal(["--lora", "a=\(adapters.run)", "a=\(adapters.peftB)"],
                          "--lora a=\(adapters.peftB): the name a is given twice; each adapter needs its own name")
        try expectRefusal(["--lora", "meshlm=\(adapters.run)"],
                          "--lora meshlm=\(adapters.run): meshlm is the base model's name (--served-model-name); give the adapter another name")
        try expectRefusal(["--lora", "a=\(directory)/missing"], "--lora a=\(directory)/missing: \(directory)/missing is not a directory")
        try FileManager.default.createDirectory(atPath: directory + "/empty", withIntermediateDirectories: true)
        try expectRefusal(["--lora", "a=\(directory)/empty"],
                          "adapter a: \(directory)/empty has no adapter_config.json and no checkpoint: give a PEFT adapter directory (adapter_config.json + adapter_model.safetensors) or a MeshLM LoRA run's checkpoint")
        try expectRefusal(["--lora", "a=\(baseStep)"], "adapter a: \(baseStep)/adapter_config.json is missing: \(baseStep) is not a LoRA checkpoint")
        try FileManager.default.removeItem(atPath: adapters.peftB + "/adapter_config.json")
        try expectRefusal(["--lora", "p=\(adapters.peftB)"],
                          "adapter p: \(adapters.peftB)/adapter_config.json is missing: a PEFT adapter directory holds adapter_config.json beside adapter_model.safetensors")

        // An adapter of another base: a MeshLM checkpoint names the size; PEFT's shapes do.
        let wider = LlamaConfig(vocabSize: 256, hiddenSize: 96, intermediateSize: 320, numHiddenLayers: 4, numAttentionHeads: 4,
                                numKeyValueHeads: 2, maxPositionEmbeddings: 512)
        let lora = LoRAConfig(rank: 2, alpha: 4, targets: [.query])
        let other = try writeLoRACheckpoint(base: servingWeights(wider), lora: lora, seed: 3, directory: directory + "/other")
        try expectRefusal(["--lora", "o=\(other)"],
                          "adapter o was trained on a model with hidden_size 96 (\(other)/model_config.json) but the served base has hidden_size 128: an adapter fits only the base it was trained on")
        try PeftAdapter.export(try CheckpointReader(stepDirectory: other), lora: lora, model: wider, to: directory + "/other-peft")
        try expectRefusal(["--lora", "o=\(directory)/other-peft"], "adapter o: \(directory)/other-peft/adapter_model.safetensors: tensor base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight has shape [2, 96]; the base model with r 2 implies [2, 128]")
        let shallower = LlamaConfig(vocabSize: 256, hiddenSize: 128, intermediateSize: 320, numHiddenLayers: 2, numAttentionHeads: 4,
                                    numKeyValueHeads: 2, maxPositionEmbeddings: 512)
        let layers = try writeLoRACheckpoint(base: servingWeights(shallower), lora: lora, seed: 3, directory: directory + "/layers")
        try expectRefusal(["--lora", "l=\(layers)"], "adapter l was trained on a model with num_hidden_layers 2")

        let dora = try writeLoRACheckpoint(base: serverWeights(), lora: LoRAConfig(rank: 2, alpha: 4, targets: [.query], weightDecomposed: true),
                                           seed: 3, directory: directory + "/dora")
        try expectRefusal(["--lora", "d=\(dora)"],
                          "adapter d (\(dora)) is a DoRA adapter (use_dora): its magnitudes rescale whole rows of the base weights, which a batch shared with other adapters cannot do; merge it with `meshlm ckpt merge-lora` and serve the merged checkpoint with --checkpoint")
        var saving = lora
        saving.modulesToSave = ["lm_head"]
        let saved = try writeLoRACheckpoint(base: serverWeights(), lora: saving, seed: 3, directory: directory + "/saved")
        try expectRefusal(["--lora", "s=\(saved)"],
                          "adapter s (\(saved)) trains whole modules besides its adapters (modules_to_save [\"lm_head\"]), which replace tensors of the base for every sequence; merge it with `meshlm ckpt merge-lora` and serve the merged checkpoint with --checkpoint")
        try PeftAdapter.export(try CheckpointReader(stepDirectory: saved), lora: saving, model: serverWeights().config, to: directory + "/saved-peft")
        try expectRefusal(["--lora", "s=\(directory)/saved-peft"], "adapter s (\(directory)/saved-peft) trains whole modules besides its adapters")
    }
}
