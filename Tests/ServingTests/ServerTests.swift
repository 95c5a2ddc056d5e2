import DataPipeline
import Model
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Serving
import Testing

/// `meshlm serve` as a child process on 127.0.0.1 with a port the OS picks.
final class ServerProcess: @unchecked Sendable {
    let process = Process()
    let port: Int
    let directory: String
    private let output = Pipe()

    init(extraArguments: [String] = []) throws {
        directory = temporaryDirectory("server")
        let step = try writeCheckpoint(serverWeights(), directory: directory + "/checkpoints")
        process.executableURL = meshlmExecutable()
        process.arguments = ["serve", "--checkpoint", step, "--port", "0", "--kv-blocks", "256", "--block-size", "8",
                             "--threads", "1"] + extraArguments
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_NUM_THREADS"] = "1"
        environment.removeValue(forKey: "OPENBLAS_CORETYPE")
        process.environment = environment
        process.standardOutput = output
        process.standardError = FileHandle.standardError
        try process.run()
        // The first line names the bound port: "serving meshlm (…) on http://127.0.0.1:PORT".
        var line = Data()
        let handle = output.fileHandleForReading
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard let range = text.range(of: "127.0.0.1:"), let port = Int(text[range.upperBound...].prefix { $0.isNumber }) else {
            process.terminate()
            throw ServingError(.checkpoint, "meshlm serve did not report its port: \(text)")
        }
        self.port = port
        // Keep draining standard output so the server never blocks on a full pipe.
        DispatchQueue.global().async { while !handle.availableData.isEmpty {} }
    }

    var baseURL: String { "http://127.0.0.1:\(port)" }

    func stop() {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: directory)
    }

    func request(_ path: String, method: String = "GET", body: String? = nil) async throws -> (Int, String) {
        var request = URLRequest(url: URL(string: baseURL + path)!)
        request.httpMethod = method
        request.timeoutInterval = 60
        if let body {
            request.httpBody = Data(body.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    /// A Prometheus gauge from /metrics.
    func metric(_ name: String) async throws -> Int {
        let (_, text) = try await request("/metrics")
        let line = text.split(separator: "\n").first { $0.hasPrefix(name + " ") }
        return line.flatMap { Int($0.split(separator: " ")[1]) } ?? -1
    }

    /// Waits until no sequence runs and every block is free (or fails after 10 s).
    func expectIdle(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        for _ in 0..<100 {
            if try await metric("meshlm_running_sequences") == 0, try await metric("meshlm_kv_blocks_free") == 256 { return }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        Issue.record("blocks leaked: \(try await metric("meshlm_kv_blocks_free")) of 256 free", sourceLocation: sourceLocation)
    }
}

/// A byte-vocabulary model big enough that 500 tokens take a while in a debug build (the
/// disconnect test hangs up sooner).
func serverWeights() -> InferenceWeights {
    let config = LlamaConfig(vocabSize: ByteTokenizer().vocabSize, hiddenSize: 128, intermediateSize: 320, numHiddenLayers: 4,
                             numAttentionHeads: 4, numKeyValueHeads: 2, maxPositionEmbeddings: 512)
    return servingWeights(config, seed: 11, scale: 0.1)
}

func meshlmExecutable() -> URL {
    var products = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 where !FileManager.default.fileExists(atPath: products.appendingPathComponent("meshlm").path) {
        products = products.deletingLastPathComponent()
    }
    return products.appendingPathComponent("meshlm")
}

/// Runs the built `meshlm` and returns its status, standard output and standard error.
func runMeshLM(_ arguments: [String]) throws -> (Int32, String, String) {
    let process = Process()
    process.executableURL = meshlmExecutable()
    process.arguments = arguments
    var environment = ProcessInfo.processInfo.environment
    environment["OPENBLAS_NUM_THREADS"] = "1"
    environment.removeValue(forKey: "OPENBLAS_CORETYPE")
    process.environment = environment
    let output = Pipe(), error = Pipe()
    process.standardOutput = output
    process.standardError = error
    try process.run()
    let errorData = error.fileHandleForReading.readDataToEndOfFile()
    let outputData = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: outputData, as: UTF8.self), String(decoding: errorData, as: UTF8.self))
}

/// The python of a venv with the `openai` package, or nil (tests then skip with the reason).
func openAIPython() -> String? {
    let candidates = [ProcessInfo.processInfo.environment["MESHLM_OPENAI_PYTHON"], "/tmp/venv-openai/bin/python"].compactMap { $0 }
    for python in candidates where FileManager.default.isExecutableFile(atPath: python) {
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: python)
        probe.arguments = ["-c", "import openai"]
        probe.standardError = FileHandle.nullDevice
        guard (try? probe.run()) != nil else { continue }
        probe.waitUntilExit()
        if probe.terminationStatus == 0 { return python }
    }
    return nil
}

func runPython(_ python: String, _ arguments: [String]) throws -> (Int32, String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: python)
    var directory = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { directory = directory.deletingLastPathComponent() }
    process.arguments = [directory.appendingPathComponent("tools/openai-client-check.py").path] + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

@Suite(.serialized) struct ServerTests {
    init() { useSingleThreadedBLAS() }

    @Test func statusCodesAndErrorBodies() async throws {
        let server = try ServerProcess()
        defer { server.stop() }
        #expect(try await server.request("/health") == (200, "ok\n"))
        let (modelsStatus, models) = try await server.request("/v1/models")
        #expect(modelsStatus == 200 && models.contains("\"id\":\"meshlm\"") && models.contains("\"object\":\"list\""))

        func expectError(_ body: String, _ status: Int, _ message: String, param: String?, code: String?,
                         path: String = "/v1/completions", sourceLocation: SourceLocation = #_sourceLocation) async throws {
            let (actualStatus, text) = try await server.request(path, method: "POST", body: body)
            #expect(actualStatus == status, "\(text)", sourceLocation: sourceLocation)
            let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
            let error = object?["error"] as? [String: Any]
            #expect(error?["message"] as? String == message, sourceLocation: sourceLocation)
            #expect(error?["param"] as? String == param, sourceLocation: sourceLocation)
            #expect(error?["code"] as? String == code, sourceLocation: sourceLocation)
            #expect(error?["type"] as? String != nil, sourceLocation: sourceLocation)
        }
        try await expectError("{not json", 400, "the request body is not valid JSON", param: nil, code: nil)
        try await expectError(#"{"prompt":"x"}"#, 400, "missing required field 'model'", param: "model", code: nil)
        try await expectError(#"{"model":"gpt-4","prompt":"x"}"#, 404,
                              "The model 'gpt-4' does not exist; this server serves 'meshlm' (GET /v1/models)",
                              param: "model", code: "model_not_found")
        try await expectError(#"{"model":"meshlm","prompt":"x","max_tokens":-3}"#, 400, "max_tokens must be at least 0, got -3",
                              param: "max_tokens", code: nil)
        // (A prompt of more than 512 bytes is refused before it is tokenized: ServerLimitsTests.)
        let long = String(repeating: "a", count: 510)
        try await expectError(#"{"model":"meshlm","prompt":"\#(long)","max_tokens":4}"#, 400,
                              "this model's maximum context length is 512 tokens; the prompt has 510 tokens and max_tokens is 4 (514 in all): shorten the prompt or lower max_tokens",
                              param: "max_tokens", code: "context_length_exceeded")
        try await expectError(#"{"model":"meshlm","messages":[]}"#, 400, "messages must hold at least one message",
                              param: "messages", code: nil, path: "/v1/chat/completions")

        // A streamed completion ends with [DONE] and carries usage when asked.
        let (status, stream) = try await server.request("/v1/completions", method: "POST", body:
            #"{"model":"meshlm","prompt":"Hello","max_tokens":5,"temperature":0,"stream":true,"ignore_eos":true,"stream_options":{"include_usage":true}}"#)
        #expect(status == 200)
        #expect(stream.hasSuffix("data: [DONE]\n\n"))
        #expect(stream.contains(#""usage":{"completion_tokens":5,"prompt_tokens":5,"total_tokens":10}"#))
        try await server.expectIdle()
    }

    /// `meshlm generate` prints what the engine generates in process; a bad checkpoint is a
    /// clear error and a non-zero exit.
    @Test func generateCommand() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let weights = serverWeights()
        _ = try writeCheckpoint(weights, directory: directory + "/checkpoints")
        let tokenizer = ByteTokenizer()
        let engine = Engine(weights: weights, configuration: EngineConfiguration(blockCount: 64), tokenizer: tokenizer)
        var parameters = SamplingParameters.greedy(maxTokens: 12)
        parameters.ignoreEOS = true
        let id = try engine.add(prompt: tokenizer.encode("Hello"), parameters: parameters)
        var expected = ""
        while engine.hasWork { for output in engine.step() where output.requestID == id { expected += output.text } }
        let (status, output, error) = try runMeshLM(["generate", "--checkpoint", directory, "--prompt", "Hello",
                                                     "--max-tokens", "12", "--ignore-eos", "--threads", "1"])
        #expect(status == 0, "\(error)")
        #expect(output == expected + "\n")
        let (badStatus, _, badError) = try runMeshLM(["generate", "--checkpoint", directory + "/missing", "--prompt", "x"])
        #expect(badStatus != 0)
        #expect(badError.contains("no committed checkpoint at \(directory)/missing"), "\(badError)")
    }

    /// A streaming client that hangs up mid-generation gets its sequence cancelled.
    @Test func disconnectFreesBlocks() async throws {
        let server = try ServerProcess()
        defer { server.stop() }
        let body = #"{"model":"meshlm","prompt":"Hello","max_tokens":500,"ignore_eos":true,"stream":true}"#
        let socket = try RawConnection(port: server.port)
        try socket.postCompletion(body)
        let first = try socket.receive()
        // Hang up at once: anything between the first chunk and the close (a metrics request)
        // gives a fast server time to finish all 500 tokens on a loaded machine.
        socket.close()
        #expect(first.contains("200"))
        try await server.expectIdle()
        let generated = try await server.metric("meshlm_generated_tokens_total")
        #expect(generated >= 1 && generated < 500, "\(generated) tokens generated")
        #expect(try await server.metric("meshlm_cancelled_requests_total") == 1)
    }

    /// A non-streaming client that hangs up before its answer gets its sequence cancelled too —
    /// even when it hangs up at once, before the request's handler runs (a poll that waits for
    /// the sequence to run first races a fast server on a loaded machine).
    @Test func nonStreamingDisconnectFreesBlocks() async throws {
        let server = try ServerProcess()
        defer { server.stop() }
        let body = #"{"model":"meshlm","prompt":"Hello","max_tokens":500,"ignore_eos":true}"#
        let socket = try RawConnection(port: server.port)
        try socket.postCompletion(body)
        socket.close()
        try await server.expectIdle()
        let generated = try await server.metric("meshlm_generated_tokens_total")
        #expect(generated >= 0 && generated < 500, "\(generated) tokens generated")
        #expect(try await server.metric("meshlm_cancelled_requests_total") == 1)
    }

    /// A bounded queue answers 429 when full; every accepted request still completes.
    @Test func fullQueueAnswers429() async throws {
        let server = try ServerProcess(extraArguments: ["--max-batch", "1", "--max-queue", "1"])
        defer { server.stop() }
        let body = #"{"model":"meshlm","prompt":"Hello","max_tokens":300,"ignore_eos":true}"#
        let statuses = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for _ in 0..<6 { group.addTask { try await server.request("/v1/completions", method: "POST", body: body) } }
            return try await group.reduce(into: [(Int, String)]()) { $0.append($1) }
        }
        #expect(statuses.contains { $0.0 == 429 && $0.1.contains("the server is busy") })
        #expect(statuses.allSatisfy { $0.0 == 200 || $0.0 == 429 })
        try await server.expectIdle()
    }

    /// SIGTERM while a request streams: it still finishes, then the server exits 0.
    @Test func sigtermDrainsAndExitsZero() async throws {
        let server = try ServerProcess()
        defer { server.stop() }
        let body = #"{"model":"meshlm","prompt":"Hello","max_tokens":200,"ignore_eos":true,"stream":true}"#
        let socket = try RawConnection(port: server.port)
        try socket.postCompletion(body)
        var received = try socket.receive()
        kill(server.process.processIdentifier, SIGTERM)
        while !received.contains("data: [DONE]") {
            let more = try socket.receive()
            if more.isEmpty { break }
            received += more
        }
        #expect(received.contains("data: [DONE]"))
        #expect(received.contains(#""finish_reason":"length""#))
        server.process.waitUntilExit()
        #expect(server.process.terminationStatus == 0)
    }

    /// OpenAI's `n`: choices 0..<n, usage counting the prompt once and every choice's tokens,
    /// choice i equal to a separate n = 1 request seeded with sample i's seed, streams whose
    /// chunks carry the choice index (each choice finishing once), and n out of range refused.
    /// /v1/chat/completions renders with the checkpoint's template (plain without one,
    /// `--chat-template` given), counting the rendered prompt's tokens; a template that raises
    /// for the messages answers 400 with its message.
    @Test func chatUsesTheTemplate() async throws {
        let messages = #"[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]"#
        func promptTokens(_ server: ServerProcess) async throws -> Int? {
            let (status, body) = try await server.request("/v1/chat/completions", method: "POST", body:
                #"{"model":"meshlm","messages":\#(messages),"max_tokens":2,"ignore_eos":true}"#)
            #expect(status == 200, "\(body)")
            let reply = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
            return (reply?["usage"] as? [String: Int])?["prompt_tokens"]
        }
        let plain = try ServerProcess()
        defer { plain.stop() }
        #expect(try await promptTokens(plain) == ByteTokenizer().encode("System: Be brief.\n\nUser: Hi\n\nAssistant:").count)

        let template = temporaryDirectory() + "/strict-chatml.jinja"
        defer { try? FileManager.default.removeItem(atPath: (template as NSString).deletingLastPathComponent) }
        try Data("""
            {% if messages[0]['role'] == 'assistant' %}{{ raise_exception('The assistant cannot speak first') }}{% endif %}\
            {% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\
            {% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}
            """.utf8).write(to: URL(fileURLWithPath: template))
        let templated = try ServerProcess(extraArguments: ["--chat-template", template])
        defer { templated.stop() }
        let rendered = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        #expect(try await promptTokens(templated) == ByteTokenizer().encode(rendered).count)
        let (status, body) = try await templated.request("/v1/chat/completions", method: "POST", body:
            #"{"model":"meshlm","messages":[{"role":"assistant","content":"Hello"},{"role":"user","content":"Hi"}],"max_tokens":2}"#)
        #expect(status == 400 && body.contains("The assistant cannot speak first"), "\(body)")
    }

    @Test func samplesPerPrompt() async throws {
        let server = try ServerProcess()
        defer { server.stop() }
        func object(_ text: String) throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "\(text)")
        }
        func choices(_ object: [String: Any]) -> [[String: Any]] { object["choices"] as? [[String: Any]] ?? [] }
        let fields = #""model":"meshlm","prompt":"Hello","max_tokens":8,"temperature":1.0,"ignore_eos":true"#

        let (status, body) = try await server.request("/v1/completions", method: "POST", body: #"{\#(fields),"n":3,"seed":5}"#)
        #expect(status == 200, "\(body)")
        let completion = try object(body)
        let texts = choices(completion).map { $0["text"] as? String ?? "?" }
        #expect(choices(completion).map { $0["index"] as? Int } == [0, 1, 2])
        #expect(choices(completion).allSatisfy { $0["finish_reason"] as? String == "length" })
        let usage = completion["usage"] as? [String: Int]
        #expect(usage == ["prompt_tokens": 5, "completion_tokens": 24, "total_tokens": 29])
        for index in 0..<3 {
            let seed = SamplingParameters.sampleSeed(requestSeed: 5, index: index)
            let (_, single) = try await server.request("/v1/completions", method: "POST", body: #"{\#(fields),"seed":\#(seed)}"#)
            #expect(choices(try object(single)).first?["text"] as? String == texts[index], "choice \(index)")
        }
        #expect(Set(texts).count > 1, "three samples at temperature 1 all gave \(texts)")

        let (chatStatus, chatBody) = try await server.request("/v1/chat/completions", method: "POST", body:
            #"{"model":"meshlm","messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"n":2,"seed":3,"ignore_eos":true}"#)
        #expect(chatStatus == 200, "\(chatBody)")
        let chat = try object(chatBody)
        #expect(choices(chat).map { $0["index"] as? Int } == [0, 1])
        #expect((chat["usage"] as? [String: Int])?["completion_tokens"] == 8)

        // Streams: every chunk names its choice; the texts add up to the non-streamed ones.
        for path in ["/v1/completions", "/v1/chat/completions"] {
            let request = path == "/v1/completions" ? #"{\#(fields),"n":3,"seed":5,"#
                : #"{"model":"meshlm","messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"n":2,"seed":3,"ignore_eos":true,"#
            let (streamStatus, stream) = try await server.request(path, method: "POST", body: request + #""stream":true,"stream_options":{"include_usage":true}}"#)
            #expect(streamStatus == 200)
            #expect(stream.hasSuffix("data: [DONE]\n\n"))
            var streamed: [Int: String] = [:], finishes: [Int: Int] = [:]
            var streamedUsage: [String: Int]?
            for line in stream.split(separator: "\n") where line.hasPrefix("data: {") {
                let chunk = try object(String(line.dropFirst(6)))
                if let usage = chunk["usage"] as? [String: Int] { streamedUsage = usage }
                for choice in choices(chunk) {
                    let index = try #require(choice["index"] as? Int)
                    let text = choice["text"] as? String ?? (choice["delta"] as? [String: Any])?["content"] as? String ?? ""
                    streamed[index, default: ""] += text
                    if choice["finish_reason"] as? String != nil { finishes[index, default: 0] += 1 }
                }
            }
            if path == "/v1/completions" {
                #expect(streamed == [0: texts[0], 1: texts[1], 2: texts[2]])
                #expect(finishes == [0: 1, 1: 1, 2: 1])
                #expect(streamedUsage == ["prompt_tokens": 5, "completion_tokens": 24, "total_tokens": 29])
            } else {
                let expected = choices(chat).map { ($0["message"] as? [String: Any])?["content"] as? String ?? "?" }
                #expect(streamed == [0: expected[0], 1: expected[1]])
                #expect(finishes == [0: 1, 1: 1])
                #expect(streamedUsage?["completion_tokens"] == 8)
            }
        }

        for n in [0, 65] {
            let (badStatus, badBody) = try await server.request("/v1/completions", method: "POST", body: #"{\#(fields),"n":\#(n)}"#)
            #expect(badStatus == 400)
            let error = try object(badBody)["error"] as? [String: Any]
            #expect(error?["message"] as? String == "n must be in [1, 64], got \(n)")
            #expect(error?["param"] as? String == "n")
        }
        // Forked (not prefilled): 2 + 1 above, 2 + 1 in the streams.
        #expect(try await server.metric("meshlm_forked_samples_total") == 6)
        try await server.expectIdle()
    }

    /// The official client (strict validation) and a bounded load test with no failure and no
    /// leaked block. Reported as skipped, with the reason, when no python with `openai` is found.
    @Test(.enabled(if: openAIPython() != nil,
                   "no python with the openai package (run tools/setup-openai-client.sh, or set MESHLM_OPENAI_PYTHON)"))
    func officialOpenAIClientAndLoad() async throws {
        let python = try #require(openAIPython())
        let server = try ServerProcess()
        defer { server.stop() }
        let (status, output) = try runPython(python, [server.baseURL + "/v1", "meshlm"])
        #expect(status == 0, "\(output)")
        #expect(output.contains("ok n") && output.contains("ok errors"), "\(output)")
        let (loadStatus, loadOutput) = try runPython(python, [server.baseURL + "/v1", "meshlm", "--load", "64", "--concurrency", "16"])
        #expect(loadStatus == 0, "\(loadOutput)")
        #expect(loadOutput.contains(#""failures": 0"#), "\(loadOutput)")
        try await server.expectIdle()
    }
}

/// A plain TCP connection for what URLSession cannot do (hang up mid-stream).
final class RawConnection {
    let descriptor: Int32

    /// `receiveTimeout` (seconds): after that long without data `receive` returns "" as if the
    /// server had closed (nil: wait for ever).
    init(port: Int, receiveTimeout: Int? = nil) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if let receiveTimeout {
            var timeout = timeval(tv_sec: receiveTimeout, tv_usec: 0)
            setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { throw ServingError(.checkpoint, "cannot connect to 127.0.0.1:\(port)") }
    }

    /// Writes all of `text`; throws once the server has closed (no SIGPIPE).
    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { throw ServingError(.checkpoint, "write failed after \(sent) of \(bytes.count) bytes (errno \(errno))") }
            sent += count
        }
    }

    /// Whether the server has closed its side (a read would give end of file), without waiting.
    func isClosedByPeer() -> Bool {
        var byte: UInt8 = 0
        return recv(descriptor, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) == 0
    }

    /// Sends `POST /v1/completions` with the JSON `body`, without waiting for the answer.
    func postCompletion(_ body: String) throws {
        try send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
    }

    func receive() throws -> String {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = read(descriptor, &buffer, buffer.count)
        return count > 0 ? String(decoding: buffer[..<count], as: UTF8.self) : ""
    }

    func close() { _ = Glibc.close(descriptor) }
}
