import Foundation

/// Runs an `Engine` on its own thread for concurrent callers (the HTTP server): requests are
/// added under a lock, the thread steps while there is work and sleeps otherwise, and each
/// request's outputs go to the handler it was submitted with, on the engine thread.
public final class EngineLoop: @unchecked Sendable {
    public typealias Handler = @Sendable (SequenceOutput) -> Void

    private let engine: Engine
    private let condition = NSCondition()
    /// Per request: its handler and how many of its samples have not finished.
    private var handlers: [Int: (handler: Handler, unfinishedSamples: Int)] = [:]
    private var stopping = false
    private var draining = false
    private var thread: Thread?
    private var finished = false
    /// (time, generated tokens) samples for the tokens/s gauge.
    private var throughputSamples: [(Double, Int)] = []

    public init(engine: Engine) {
        self.engine = engine
    }

    public var modelConfigVocabulary: Int { engine.modelConfig.vocabSize }

    public func start() {
        let thread = Thread { [self] in run() }
        thread.name = "meshlm-engine"
        thread.stackSize = 8 << 20
        self.thread = thread
        thread.start()
    }

    /// Queues a request; the outputs of all its samples go to `handler` (each sample's last one
    /// with a finish reason; `SequenceOutput.sampleIndex` tells the samples apart). `adapter`
    /// indexes the engine's served LoRA adapters (nil: the base model).
    public func submit(prompt: [Int32], parameters: SamplingParameters, adapter: Int? = nil,
                       handler: @escaping Handler) throws(ServingError) -> Int {
        condition.lock()
        defer { condition.unlock() }
        if draining || stopping {
            throw ServingError(.overloaded, "the server is shutting down and accepts no new requests")
        }
        let id = try engine.add(prompt: prompt, parameters: parameters, adapter: adapter)
        handlers[id] = (handler, parameters.sampleCount)
        condition.signal()
        return id
    }

    /// Ends a request, every sample of it (a client that went away), and frees its blocks.
    public func cancel(_ id: Int) {
        condition.lock()
        engine.cancel(id)
        condition.signal()
        condition.unlock()
    }

    public var statistics: EngineStatistics {
        condition.lock()
        defer { condition.unlock() }
        return engine.statistics
    }

    public var isDraining: Bool {
        condition.lock()
        defer { condition.unlock() }
        return draining
    }

    /// Generated tokens per second over the last ten seconds.
    public var tokensPerSecond: Double {
        condition.lock()
        defer { condition.unlock() }
        guard let first = throughputSamples.first, let last = throughputSamples.last, last.0 > first.0 else { return 0 }
        let now = Date().timeIntervalSince1970
        // An idle engine records no samples: count the time since the last one too.
        return Double(last.1 - first.1) / Swift.max(now - first.0, last.0 - first.0)
    }

    /// Stops admitting requests and returns once every running and queued one has finished.
    public func drain() {
        condition.lock()
        draining = true
        condition.signal()
        while engine.hasWork { condition.wait() }
        condition.unlock()
    }

    /// Ends the engine thread (after `drain` for a clean shutdown).
    public func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while !finished && thread != nil { condition.wait() }
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while !engine.hasWork && !stopping { condition.wait() }
            if stopping && !engine.hasWork {
                finished = true
                condition.broadcast()
                condition.unlock()
                return
            }
            let outputs = engine.step()
            let now = Date().timeIntervalSince1970
            throughputSamples.append((now, engine.statistics.generatedTokens))
            if let index = throughputSamples.firstIndex(where: { now - $0.0 <= 10 }), index > 0 {
                throughputSamples.removeFirst(index)
            }
            var deliveries: [(Handler, SequenceOutput)] = []
            for output in outputs {
                guard var entry = handlers[output.requestID] else { continue }
                deliveries.append((entry.handler, output))
                if output.finishReason != nil {
                    entry.unfinishedSamples -= 1
                    handlers[output.requestID] = entry.unfinishedSamples == 0 ? nil : entry
                }
            }
            // Wake `drain` when the last sequence finished.
            condition.broadcast()
            condition.unlock()
            for (handler, output) in deliveries { handler(output) }
        }
    }
}
