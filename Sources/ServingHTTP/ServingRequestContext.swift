import Hummingbird
import HummingbirdCore
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Hummingbird's request context plus the request's connection, so a non-streaming request can
/// learn that its client left and cancel its sequence instead of generating for nobody.
struct ServingRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let connection: any Channel

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        connection = source.channel
    }

    /// Calls `onHangUp` once if the client has closed its side of the connection (or the
    /// connection is gone) before `body` returns — also when that happened before this call,
    /// since the connection's `HangUpTracker` has watched it from the start.
    func watchingHangUp<Result>(_ onHangUp: @escaping @Sendable () -> Void, _ body: () async -> Result) async -> Result {
        let tracker = try? await connection.pipeline.handler(type: HangUpTracker.self).get()
        tracker?.watch(onHangUp)
        let result = await body()
        tracker?.stopWatching()
        return result
    }
}

/// HTTP/1.1 as Hummingbird serves it, with a `HangUpTracker` first in every connection's
/// pipeline: a client that sends its request and hangs up at once has closed its input before
/// the request's handler runs, so the hang-up must be recorded from the connection's start.
struct HangUpTrackingHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value
    let http1: HTTP1Channel

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(HangUpTracker(), position: .first)
        }.flatMap { http1.setup(channel: channel, logger: logger) }
    }

    func handle(value: Value, logger: Logger) async {
        await http1.handle(value: value, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// Hummingbird's HTTP/1.1 server whose connections record when their client hangs up. A
    /// connection that sends nothing for `idleTimeout` while no request is being answered (idle
    /// between requests, or stalled in a request's head or body) is closed.
    static func http1TrackingHangUps(idleTimeout: TimeAmount) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in
            HangUpTrackingHTTP1Channel(http1: HTTP1Channel(responder: responder, configuration: .init(idleTimeout: idleTimeout)))
        }
    }
}

/// Records that a connection's client closed its side (Hummingbird allows half-closed
/// connections, so that shows as an `inputClosed` event, not as a closed channel) or that the
/// connection went away, and reports it to the request watching at the time. Events pass on
/// unchanged.
final class HangUpTracker: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = NIOAny
    private struct State {
        var hungUp = false
        var onHangUp: (@Sendable () -> Void)?
    }
    private let state = NIOLockedValueBox(State())

    /// Calls `onHangUp` now if the client already hung up, else once when it does (until
    /// `stopWatching`).
    func watch(_ onHangUp: @escaping @Sendable () -> Void) {
        let hungUp = state.withLockedValue { state in
            if !state.hungUp { state.onHangUp = onHangUp }
            return state.hungUp
        }
        if hungUp { onHangUp() }
    }

    func stopWatching() {
        state.withLockedValue { $0.onHangUp = nil }
    }

    private func report() {
        let onHangUp = state.withLockedValue { state in
            defer { state.hungUp = true; state.onHangUp = nil }
            return state.onHangUp
        }
        onHangUp?()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed { report() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        report()
        context.fireChannelInactive()
    }
}
