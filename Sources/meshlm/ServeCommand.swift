import ArgumentParser
import Foundation
import Runtime
import Serving
import ServingHTTP
import Tensors

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a checkpoint over an OpenAI-compatible HTTP API (/v1/models, /v1/completions, /v1/chat/completions).",
        discussion: "SIGTERM or SIGINT stops accepting requests, finishes the running ones and exits 0. Under mpirun -np N the model is split over the N ranks (tensor parallelism): rank 0 serves HTTP and drives the others; signal rank 0. See docs/serving.md.")

    @OptionGroup var job: JobOptions
    @OptionGroup var engine: EngineOptions
    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(parsing: .unconditional, help: "TCP port (0 picks a free one; the chosen port is printed).") var port = 8000
    @Option(help: "The model id clients name in requests.") var servedModelName = "meshlm"
    @Option(parsing: .unconditional, help: "Seconds a connection may send nothing (between requests, or mid-request) before it is closed; a request body must also arrive whole within it.")
    var idleTimeout: Double = 30
    @OptionGroup var adapters: LoRAModuleOptions

    /// The longest `--idle-timeout`: a day is already far past any client worth waiting for.
    static let maximumIdleTimeout: Double = 86_400

    func validate() throws {
        // A port past 65535 would wrap (70000 listened on 4464) rather than fail.
        guard (0...65535).contains(port) else {
            throw ValidationError("--port \(port): a TCP port is 1–65535 (or 0 to pick a free one)")
        }
        guard !host.isEmpty else { throw ValidationError("--host is empty: give an address to listen on (127.0.0.1, 0.0.0.0, a host name)") }
        guard !servedModelName.isEmpty else { throw ValidationError("--served-model-name is empty: requests name the model by it") }
        guard idleTimeout >= 0.001, idleTimeout <= Self.maximumIdleTimeout else {
            throw ValidationError("--idle-timeout \(idleTimeout): give seconds from 0.001 to \(Int(Self.maximumIdleTimeout)) (a day)")
        }
        try adapters.validate(baseName: servedModelName)
    }

    func run() throws {
        try job.runJob { context in
            // Every rank refuses alike: one message for the job.
            try context.world.collectively {
                guard context.world.size == 1 || adapters.lora.isEmpty else {
                    throw JobError("--lora serves adapters unmerged on one rank; tensor-parallel serving (mpirun -np \(context.world.size)) cannot take them yet: start one rank, or merge an adapter into its base with `meshlm ckpt merge-lora` and serve that checkpoint on several ranks")
                }
            }
            let (weights, tokenizer, tensorGroup) = try engine.load(world: context.world)
            let served = try adapters.load(base: weights.config)
            let generator = Engine(weights: weights, configuration: engine.configuration, tokenizer: tokenizer,
                                   threads: KernelThreads(count: context.threads), tensorGroup: tensorGroup, adapters: served)
            if let tensorGroup, !tensorGroup.isLeader {
                // mpirun may forward a SIGTERM meant for the job: rank 0 decides when to stop
                // (after draining), so a follower only records it.
                StopSignals.install()
                generator.model.follow(cache: generator.cache)
                return
            }
            let loop = EngineLoop(engine: generator)
            loop.start()
            let chat = try engine.chatPrompter(tokenizer: tokenizer)
            let server = OpenAIServer(loop: loop, tokenizer: tokenizer, chat: chat, modelName: servedModelName,
                                      contextLength: weights.config.maxPositionEmbeddings,
                                      adapters: served.map { ($0.name, $0.root) },
                                      idleTimeout: .milliseconds(Int64((idleTimeout * 1000).rounded())))
            let log = context.log
            let (host, port) = (self.host, self.port)
            let parameters = Double(weights.config.parameterCount) / 1e6
            let split = context.world.size > 1 ? ", tensor parallel over \(context.world.size) ranks" : ""
            let outcome = BlockingOutcome()
            Task {
                do {
                    try await server.run(host: host, port: port) { bound in
                        log.info(String(format: "serving %@ (%.1fM parameters%@) on http://%@:%d", servedModelName, parameters, split, host, bound))
                        log.info("chat template: \(chat.source)")
                        for adapter in served {
                            log.info(String(format: "LoRA adapter %@ (r %d, scaling %g, %@) from %@", adapter.name, adapter.rank,
                                            adapter.scaling, adapter.targets.map(\.moduleName).joined(separator: ", "), adapter.root))
                        }
                    }
                    outcome.finish(nil)
                } catch {
                    outcome.finish(error)
                }
            }
            let failure = outcome.wait()
            // The listener is closed and in-flight requests are answered: finish what is queued.
            loop.drain()
            loop.stop()
            tensorGroup?.stopFollowers()
            if let failure { throw JobError("the HTTP server on \(host):\(port) failed: \(failure)") }
            log.info("drained; exiting")
        }
    }
}

/// Waits on the main thread for the server task's end.
final class BlockingOutcome: @unchecked Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    private var error: (any Error)?

    func finish(_ error: (any Error)?) {
        self.error = error
        semaphore.signal()
    }

    func wait() -> (any Error)? {
        semaphore.wait()
        return error
    }
}
