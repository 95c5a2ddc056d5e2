import Hummingbird
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

    /// Calls `onHangUp` once if the client closes its side of the connection (or the connection
    /// goes away) before `body` returns. Hummingbird allows half-closed connections, so a client
    /// that hangs up shows as an `inputClosed` event, not as a closed channel.
    func watchingHangUp<Result>(_ onHangUp: @escaping @Sendable () -> Void, _ body: () async -> Result) async -> Result {
        let watcher = HangUpWatcher(onHangUp)
        let added = try? await connection.pipeline.addHandler(watcher, position: .first).get()
        let result = await body()
        if added != nil { _ = try? await connection.pipeline.removeHandler(watcher).get() }
        return result
    }
}

/// Reports the end of a connection's input (or the connection) to a callback, passing every
/// event on unchanged.
private final class HangUpWatcher: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = NIOAny
    // Touched only on the connection's event loop.
    private var onHangUp: (@Sendable () -> Void)?

    init(_ onHangUp: @escaping @Sendable () -> Void) {
        self.onHangUp = onHangUp
    }

    private func report() {
        onHangUp?()
        onHangUp = nil
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
