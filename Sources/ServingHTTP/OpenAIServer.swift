import DataPipeline
import Foundation
import Hummingbird
import NIOCore
import Serving

/// MeshLM's OpenAI-compatible HTTP API in front of an `EngineLoop`:
///
///     GET  /health                 200 "ok" (503 while draining)
///     GET  /metrics                Prometheus text
///     GET  /v1/models
///     POST /v1/completions         stream or not
///     POST /v1/chat/completions    stream or not
///
/// A request's `model` names the base (`modelName`) or one of the served LoRA adapters
/// (`adapters`, vLLM's convention); chat prompts use the base's template for every adapter.
///
/// Errors use OpenAI's body. A streaming client that disconnects has its sequence cancelled
/// (its blocks freed) at the next write. SIGTERM/SIGINT stop accepting connections, let running
/// requests finish, then `run` returns.
///
/// Limits (docs/serving.md, "Limits"): a body larger than `bodyByteLimit` is refused unread, a
/// prompt text longer than `promptByteLimit` untokenized; decoding, rendering and tokenizing run
/// off Swift's cooperative threads; a connection idle for `idleTimeout`, or whose request body
/// takes longer than that to arrive, is closed.
public final class OpenAIServer: Sendable {
    public let loop: EngineLoop
    public let tokenizer: any Tokenizer
    public let modelName: String
    /// The LoRA adapters requests may name, in the engine's order.
    public let adapters: [(name: String, root: String)]
    public let contextLength: Int
    /// How long a connection may send nothing (between requests or mid-request), and how long a
    /// request body may take to arrive whole.
    public let idleTimeout: Duration
    /// The most bytes of prompt text that can fit the context: no token stands for more than
    /// the tokenizer's longest token, so a longer text has more tokens than the context holds.
    public let promptByteLimit: Int
    /// The largest request body read: room for a prompt of `promptByteLimit` bytes written the
    /// longest way JSON allows (6 bytes per byte, `\u0001`), or for `contextLength` token ids of
    /// up to 12 bytes each (`-2147483648,`), plus 1 MiB for everything else; at most 16 MiB.
    public let bodyByteLimit: Int
    let chat: ChatPrompter
    let created = Int(Date().timeIntervalSince1970)

    public init(loop: EngineLoop, tokenizer: any Tokenizer, chat: ChatPrompter, modelName: String, contextLength: Int,
                adapters: [(name: String, root: String)] = [], idleTimeout: Duration = .seconds(30)) {
        self.loop = loop
        self.adapters = adapters
        self.tokenizer = tokenizer
        self.chat = chat
        self.modelName = modelName
        self.contextLength = contextLength
        self.idleTimeout = idleTimeout
        promptByteLimit = contextLength * tokenizer.longestTokenByteCount
        bodyByteLimit = Swift.min(16 << 20, (1 << 20) + contextLength * Swift.max(6 * tokenizer.longestTokenByteCount, 12))
    }

    /// Serves until SIGTERM or SIGINT; `onListening` gets the bound port (useful with port 0).
    public func run(host: String, port: Int, onListening: @escaping @Sendable (Int) -> Void) async throws {
        let router = Router(context: ServingRequestContext.self)
        router.get("/health") { _, _ -> Response in
            self.loop.isDraining ? self.text("draining\n", status: .serviceUnavailable) : self.text("ok\n", status: .ok)
        }
        router.get("/metrics") { _, _ -> Response in self.text(self.metrics(), status: .ok) }
        router.get("/v1/models") { _, _ -> Response in
            let base = ModelList.Model(id: self.modelName, created: self.created, maxModelLength: self.contextLength)
            let adapters = self.adapters.map {
                ModelList.Model(id: $0.name, created: self.created, maxModelLength: self.contextLength, root: $0.root, parent: self.modelName)
            }
            return self.json(ModelList(data: [base] + adapters))
        }
        router.post("/v1/completions") { request, context -> Response in
            await self.respond { () async throws(ServingError) -> Response in
                try await self.completions(try await self.body(request, context: context), context: context)
            }
        }
        router.post("/v1/chat/completions") { request, context -> Response in
            await self.respond { () async throws(ServingError) -> Response in
                try await self.chat(try await self.body(request, context: context), context: context)
            }
        }
        let application = Application(
            router: router,
            server: .http1TrackingHangUps(idleTimeout: TimeAmount(idleTimeout)),
            configuration: .init(address: .hostname(host, port: port), serverName: "meshlm"),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? port) })
        try await application.runService(gracefulShutdownSignals: [.sigterm, .sigint])
    }

    // MARK: Endpoints

    private func completions(_ data: Data, context: ServingRequestContext) async throws(ServingError) -> Response {
        let request = try await offPool { () throws(ServingError) in try decodeRequest(CompletionRequest.self, from: data) }
        let adapter = try checkModel(request.model)
        let modelName = request.model
        let prompt: [Int32]
        switch request.prompt {
        case .text(let text): prompt = try await encode(text)
        case .tokens(let ids): prompt = ids
        case .texts(let texts):
            guard texts.count == 1 else {
                throw ServingError(.invalidRequest, "prompt must be one string (got a list of \(texts.count)); send one request per prompt", parameter: "prompt")
            }
            prompt = try await encode(texts[0])
        }
        let parameters = try request.sampling.parameters(defaultMaxTokens: 16, logprobs: request.logprobs)
        let id = "cmpl-" + UUID().uuidString.lowercased()
        let (sequence, stream) = try start(prompt: prompt, parameters: parameters, adapter: adapter)
        let echo = request.echo == true ? (request.prompt.singleText ?? tokenizer.decode(prompt)) : ""
        if request.stream == true {
            let includeUsage = request.streamOptions?.includeUsage == true
            return streamResponse(sequence: sequence) { [self] writer in
                // Per choice: whether its echo went out, and its tokens so far.
                var sentEcho = Set<Int>()
                var completionTokens: [Int: Int] = [:]
                for await output in stream {
                    let index = output.sampleIndex
                    completionTokens[index] = output.outputTokenCount
                    guard output.finishReason != .cancelled else { return }
                    let text = (sentEcho.contains(index) ? "" : echo) + output.text
                    sentEcho.insert(index)
                    if text.isEmpty && output.finishReason == nil && parameters.logprobs == nil { continue }
                    let chunk = Completion(id: id, created: created, model: modelName,
                                           choices: [CompletionChoice(index: index, text: text,
                                                                      finishReason: output.finishReason?.rawValue,
                                                                      logprobs: completionLogprobs([output], parameters))])
                    try await writer(chunk)
                }
                if includeUsage {
                    let usage = Usage(promptTokens: prompt.count, completionTokens: completionTokens.values.reduce(0, +))
                    try await writer(Completion(id: id, created: created, model: modelName, choices: [], usage: usage))
                }
            }
        }
        let samples = bySample(await collect(stream, sequence: sequence, context: context), count: parameters.sampleCount)
        let choices = samples.enumerated().map { index, outputs in
            CompletionChoice(index: index, text: echo + outputs.map(\.text).joined(),
                             finishReason: (outputs.last?.finishReason ?? .length).rawValue,
                             logprobs: completionLogprobs(outputs, parameters))
        }
        return json(Completion(id: id, created: created, model: modelName, choices: choices,
                               usage: Usage(promptTokens: prompt.count, completionTokens: completionTokens(samples))))
    }

    private func chat(_ data: Data, context: ServingRequestContext) async throws(ServingError) -> Response {
        let request = try await offPool { () throws(ServingError) in try decodeRequest(ChatRequest.self, from: data) }
        let adapter = try checkModel(request.model)
        let modelName = request.model
        guard !request.messages.isEmpty else {
            throw ServingError(.invalidRequest, "messages must hold at least one message", parameter: "messages")
        }
        var messages: [ChatMessage] = []
        for (index, message) in request.messages.enumerated() { messages.append(try message.chatMessage(index: index)) }
        let prompt = try await offPool { [chat, messages] () throws(ServingError) in
            let text = try chat.text(messages)
            try self.checkFits(text, parameter: "messages")
            return chat.encode(text)
        }
        let wantsLogprobs = request.logprobs == true
        var parameters = try request.sampling.parameters(defaultMaxTokens: contextLength,
                                                         logprobs: wantsLogprobs ? (request.topLogprobs ?? 0) : nil)
        // Without max_tokens, generate up to the context (OpenAI's default).
        if request.sampling.maxTokens == nil && request.sampling.maxCompletionTokens == nil {
            parameters.maxTokens = Swift.max(1, contextLength - prompt.count)
        }
        parameters.stopStrings += chat.stopStrings
        parameters.stopTokens += chat.stopTokens
        let id = "chatcmpl-" + UUID().uuidString.lowercased()
        let (sequence, stream) = try start(prompt: prompt, parameters: parameters, adapter: adapter)
        if request.stream == true {
            let includeUsage = request.streamOptions?.includeUsage == true
            let sampleCount = parameters.sampleCount
            return streamResponse(sequence: sequence) { [self] writer in
                // Every choice opens with the assistant role, as OpenAI's streams do.
                for index in 0..<sampleCount {
                    try await writer(ChatChunk(id: id, created: created, model: modelName,
                                               choices: [ChatChunkChoice(index: index, delta: ChatDelta(role: "assistant", content: ""))]))
                }
                var completionTokens: [Int: Int] = [:]
                for await output in stream {
                    completionTokens[output.sampleIndex] = output.outputTokenCount
                    guard output.finishReason != .cancelled else { return }
                    if output.text.isEmpty && output.finishReason == nil && !wantsLogprobs { continue }
                    let choice = ChatChunkChoice(index: output.sampleIndex,
                                                 delta: ChatDelta(content: output.text.isEmpty ? nil : output.text),
                                                 finishReason: output.finishReason?.rawValue,
                                                 logprobs: wantsLogprobs ? chatLogprobs([output]) : nil)
                    try await writer(ChatChunk(id: id, created: created, model: modelName, choices: [choice]))
                }
                if includeUsage {
                    let usage = Usage(promptTokens: prompt.count, completionTokens: completionTokens.values.reduce(0, +))
                    try await writer(ChatChunk(id: id, created: created, model: modelName, choices: [], usage: usage))
                }
            }
        }
        let samples = bySample(await collect(stream, sequence: sequence, context: context), count: parameters.sampleCount)
        let choices = samples.enumerated().map { index, outputs in
            ChatChoice(index: index, message: ChatMessageBody(content: outputs.map(\.text).joined()),
                       finishReason: (outputs.last?.finishReason ?? .length).rawValue,
                       logprobs: wantsLogprobs ? chatLogprobs(outputs) : nil)
        }
        return json(ChatCompletion(id: id, created: created, model: modelName, choices: choices,
                                   usage: Usage(promptTokens: prompt.count, completionTokens: completionTokens(samples))))
    }

    // MARK: Engine bridge

    /// Submits to the engine; the outputs of every sample arrive on the stream, which ends once
    /// each sample has finished.
    private func start(prompt: [Int32], parameters: SamplingParameters,
                       adapter: Int?) throws(ServingError) -> (Int, AsyncStream<SequenceOutput>) {
        let (stream, continuation) = AsyncStream<SequenceOutput>.makeStream()
        let unfinished = UnfinishedSamples(parameters.sampleCount)
        let id = try loop.submit(prompt: prompt, parameters: parameters, adapter: adapter) { output in
            continuation.yield(output)
            if output.finishReason != nil && unfinished.finishOne() { continuation.finish() }
        }
        let loop = self.loop
        continuation.onTermination = { termination in
            if case .cancelled = termination { loop.cancel(id) }
        }
        return (id, stream)
    }

    /// Gathers a non-streaming request's outputs. If the client hangs up first or the handler's
    /// task is cancelled, the sequence is cancelled and its blocks freed.
    private func collect(_ stream: AsyncStream<SequenceOutput>, sequence: Int, context: ServingRequestContext) async -> [SequenceOutput] {
        let loop = self.loop
        return await context.watchingHangUp({ loop.cancel(sequence) }) {
            await withTaskCancellationHandler {
                var outputs: [SequenceOutput] = []
                for await output in stream { outputs.append(output) }
                return outputs
            } onCancel: {
                loop.cancel(sequence)
            }
        }
    }

    /// A server-sent-events response: `data: {json}` per chunk, then `data: [DONE]`. A failed
    /// write (the client left) cancels the sequence.
    private func streamResponse(sequence: Int,
                                _ produce: @escaping @Sendable (_ write: (any Encodable) async throws -> Void) async throws -> Void) -> Response {
        let loop = self.loop
        let body = ResponseBody { writer in
            do {
                try await produce { value in
                    var event = Data("data: ".utf8)
                    event.append(encodeJSON(AnyEncodable(value)))
                    event.append(Data("\n\n".utf8))
                    try await writer.write(ByteBuffer(bytes: event))
                }
                try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                try await writer.finish(nil)
            } catch {
                loop.cancel(sequence)
                throw error
            }
        }
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        return Response(status: .ok, headers: headers, body: body)
    }

    // MARK: Helpers

    /// A request's outputs split by sample (choice index), each in generation order.
    private func bySample(_ outputs: [SequenceOutput], count: Int) -> [[SequenceOutput]] {
        var samples = [[SequenceOutput]](repeating: [], count: count)
        for output in outputs where output.sampleIndex < count { samples[output.sampleIndex].append(output) }
        return samples
    }

    /// Every sample's generated tokens (the prompt counts once in `usage`).
    private func completionTokens(_ samples: [[SequenceOutput]]) -> Int {
        samples.reduce(0) { $0 + ($1.last?.outputTokenCount ?? 0) }
    }

    /// The request's body: refused unread when its Content-Length is over `bodyByteLimit` (and
    /// when more arrives than that); the connection is closed when the body has not arrived
    /// whole within `idleTimeout` (a client sending a byte now and then is not idle).
    private func body(_ request: Request, context: ServingRequestContext) async throws(ServingError) -> Data {
        let limit = bodyByteLimit
        let tooLarge = ServingError(.bodyTooLarge, "the request body is larger than this server reads (\(limit) bytes: room for the longest prompt that fits this model's context of \(contextLength) tokens); shorten the prompt")
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit { throw tooLarge }
        let timeout = idleTimeout
        let read = await withTaskGroup(of: Result<ByteBuffer, any Error>?.self) { group in
            group.addTask {
                var request = request
                do { return .success(try await request.collectBody(upTo: limit)) } catch { return .failure(error) }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            if first == nil { context.connection.close(promise: nil) }
            group.cancelAll()
            return first
        }
        switch read {
        case .success(let buffer): return Data(buffer.readableBytesView)
        case .failure(let error) where error is NIOTooManyBytesError: throw tooLarge
        case .failure(let error): throw ServingError(.invalidRequest, "the request body could not be read: \(error)")
        case nil:
            throw ServingError(.invalidRequest, "the request body did not arrive within \(timeout) (--idle-timeout); the connection was closed")
        }
    }

    /// A completion prompt's ids, encoded off the cooperative pool once it is known to fit.
    private func encode(_ text: String) async throws(ServingError) -> [Int32] {
        try await offPool { () throws(ServingError) in
            try self.checkFits(text, parameter: "prompt")
            return self.tokenizer.encode(text)
        }
    }

    /// Refuses a prompt text with more bytes than `promptByteLimit`: it has more tokens than the
    /// context holds, so it is not worth encoding.
    private func checkFits(_ text: String, parameter: String) throws(ServingError) {
        let bytes = text.utf8.count
        guard bytes > promptByteLimit else { return }
        let longest = tokenizer.longestTokenByteCount
        let tokens = (bytes + longest - 1) / longest
        throw ServingError(.promptTooLong, "this model's maximum context length is \(contextLength) tokens; the prompt has \(bytes) bytes, so at least \(tokens) tokens (no token of this tokenizer is longer than \(longest) \(longest == 1 ? "byte" : "bytes")): shorten the prompt", parameter: parameter)
    }

    /// Runs `work` (decoding a body, rendering and encoding a prompt) on a Dispatch thread
    /// rather than Swift's cooperative pool, which has one thread per core: a few long prompts
    /// there would keep every other request, /health too, waiting for a thread.
    private func offPool<Value: Sendable>(_ work: @escaping @Sendable () throws(ServingError) -> Value) async throws(ServingError) -> Value {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<Value, ServingError>, Never>) in
            DispatchQueue.global().async {
                do throws(ServingError) {
                    continuation.resume(returning: .success(try work()))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }

    /// The served adapter a request's `model` names (its index), nil for the base model.
    private func checkModel(_ model: String) throws(ServingError) -> Int? {
        if model == modelName { return nil }
        if let index = adapters.firstIndex(where: { $0.name == model }) { return index }
        let adapterList = adapters.isEmpty ? "" : " and the LoRA adapters " + adapters.map { "'\($0.name)'" }.joined(separator: ", ")
        throw ServingError(.modelNotFound, "The model '\(model)' does not exist; this server serves '\(modelName)'\(adapterList) (GET /v1/models)", parameter: "model")
    }

    private func respond(_ body: () async throws(ServingError) -> Response) async -> Response {
        do {
            return try await body()
        } catch {
            return errorResponse(error)
        }
    }

    func errorResponse(_ error: ServingError) -> Response {
        let (status, type, code): (HTTPResponse.Status, String, String?) = switch error.kind {
        case .invalidRequest: (.badRequest, "invalid_request_error", nil)
        case .promptTooLong: (.badRequest, "invalid_request_error", "context_length_exceeded")
        case .modelNotFound: (.notFound, "invalid_request_error", "model_not_found")
        case .overloaded where loop.isDraining: (.serviceUnavailable, "server_error", "shutting_down")
        case .overloaded: (.tooManyRequests, "server_error", "queue_full")
        case .bodyTooLarge: (.contentTooLarge, "invalid_request_error", nil)
        case .checkpoint, .engineBusy: (.internalServerError, "server_error", nil)
        }
        return json(ErrorBody(error: .init(message: error.description, type: type, param: error.parameter, code: code)), status: status)
    }

    private func json<Value: Encodable>(_ value: Value, status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: encodeJSON(value))))
    }

    private func text(_ value: String, status: HTTPResponse.Status) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; version=0.0.4"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: value)))
    }

    private func completionLogprobs(_ outputs: [SequenceOutput], _ parameters: SamplingParameters) -> CompletionLogprobs? {
        guard parameters.logprobs != nil else { return nil }
        var result = CompletionLogprobs()
        var offset = 0
        for output in outputs {
            guard let token = output.token else { continue }
            let text = tokenizer.decode([token.token])
            result.tokens.append(text)
            result.tokenLogprobs.append(token.logprob)
            result.topLogprobs.append(Dictionary(token.topLogprobs.map { (tokenizer.decode([$0.token]), $0.logprob) },
                                                 uniquingKeysWith: { first, _ in first }))
            result.textOffset.append(offset)
            offset += text.count
        }
        return result
    }

    private func chatLogprobs(_ outputs: [SequenceOutput]) -> ChatLogprobs {
        ChatLogprobs(content: outputs.compactMap { output in
            guard let token = output.token else { return nil }
            let text = tokenizer.decode([token.token])
            return ChatLogprobs.Entry(token: text, logprob: token.logprob, bytes: Array(text.utf8),
                                      topLogprobs: token.topLogprobs.map {
                                          let alternative = tokenizer.decode([$0.token])
                                          return ChatLogprobs.Top(token: alternative, logprob: $0.logprob, bytes: Array(alternative.utf8))
                                      })
        })
    }

    /// Prometheus text format.
    func metrics() -> String {
        let statistics = loop.statistics
        var lines: [String] = []
        func add(_ name: String, _ type: String, _ help: String, _ value: Double) {
            lines.append("# HELP \(name) \(help)")
            lines.append("# TYPE \(name) \(type)")
            lines.append("\(name) \(value == value.rounded() ? String(Int(value)) : String(value))")
        }
        add("meshlm_queue_depth", "gauge", "Requests waiting for admission.", Double(statistics.waiting))
        add("meshlm_running_sequences", "gauge", "Sequences in the running batch.", Double(statistics.running))
        add("meshlm_kv_blocks_free", "gauge", "KV cache blocks no sequence holds.", Double(statistics.freeBlocks))
        add("meshlm_kv_blocks_total", "gauge", "KV cache blocks.", Double(statistics.totalBlocks))
        add("meshlm_tokens_per_second", "gauge", "Generated tokens per second over the last 10 s.", loop.tokensPerSecond)
        add("meshlm_generated_tokens_total", "counter", "Tokens generated since start.", Double(statistics.generatedTokens))
        add("meshlm_prompt_tokens_computed_total", "counter", "Prompt tokens computed (not shared) since start.", Double(statistics.promptTokensComputed))
        add("meshlm_preemptions_total", "counter", "Sequences preempted for recompute.", Double(statistics.preemptions))
        add("meshlm_prefix_shared_blocks_total", "counter", "Prompt blocks reused from the prefix cache.", Double(statistics.sharedBlocks))
        add("meshlm_cancelled_requests_total", "counter", "Requests cancelled before they finished because their client left.", Double(statistics.cancelledRequests))
        add("meshlm_forked_samples_total", "counter", "Samples of n > 1 requests started from their prompt's prefill instead of prefilling it again.", Double(statistics.forkedSamples))
        if !adapters.isEmpty {
            func addPerAdapter(_ name: String, _ type: String, _ help: String, _ values: [Int]) {
                lines.append("# HELP \(name) \(help)")
                lines.append("# TYPE \(name) \(type)")
                for (adapter, value) in zip(adapters, values) { lines.append("\(name){adapter=\"\(adapter.name)\"} \(value)") }
            }
            addPerAdapter("meshlm_lora_requests_total", "counter", "Requests per served LoRA adapter since start.", statistics.adapterRequests)
            addPerAdapter("meshlm_lora_running_sequences", "gauge", "Sequences of each served LoRA adapter in the running batch.", statistics.adapterRunning)
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// Counts a request's samples down to the last finish. Touched only on the engine thread (the
/// loop calls a request's handler from there, one output at a time).
private final class UnfinishedSamples: @unchecked Sendable {
    private var count: Int
    init(_ count: Int) { self.count = count }

    /// Records one finished sample; true when it was the last.
    func finishOne() -> Bool {
        count -= 1
        return count == 0
    }
}

/// Lets the streaming writer take any chunk type.
private struct AnyEncodable: Encodable {
    let value: any Encodable
    init(_ value: any Encodable) { self.value = value }
    func encode(to encoder: any Encoder) throws { try value.encode(to: encoder) }
}

extension StringOrList {
    var singleText: String? {
        switch self {
        case .text(let text): text
        case .texts(let texts) where texts.count == 1: texts[0]
        default: nil
        }
    }
}
