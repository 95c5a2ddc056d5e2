import Foundation

/// A background thread that keeps non-blocking MPI operations moving while the rank computes.
///
/// Open MPI makes no asynchronous progress: a non-blocking collective advances only inside MPI
/// calls, so a gradient all-reduce started during backward would otherwise wait for the next
/// hook between layers (hundreds of milliseconds for a large model) and mostly happen at the
/// end. This thread calls `MPI_Test` on every watched request every `interval` seconds and
/// sleeps when there is nothing to watch. It needs `MPI_THREAD_MULTIPLE`, which
/// `MPIEnvironment.initialize` requests; `Request` serializes its own tests and waits.
public final class ProgressThread: @unchecked Sendable {
    private let condition = NSCondition()
    private var watched: [Request] = []
    private var running = true
    private let interval: Double
    private var thread: Thread?

    public init(interval: Double = 0.0002) {
        self.interval = interval
        let thread = Thread { [weak self] in self?.loop() }
        thread.name = "meshlm-mpi-progress"
        self.thread = thread
        thread.start()
    }

    /// Tests `request` until it completes (or the thread stops).
    public func watch(_ request: Request) {
        condition.lock()
        watched.append(request)
        condition.signal()
        condition.unlock()
    }

    /// Ends the thread; requests still watched are left to their owners' `wait`.
    public func stop() {
        condition.lock()
        running = false
        watched = []
        condition.signal()
        condition.unlock()
    }

    deinit { stop() }

    private func loop() {
        while true {
            condition.lock()
            while running && watched.isEmpty { condition.wait() }
            if !running {
                condition.unlock()
                return
            }
            let current = watched
            condition.unlock()
            var finished: [ObjectIdentifier] = []
            for request in current {
                // An MPI failure here is reported by the owner's wait, which sees the same error.
                if (try? request.test()) ?? true { finished.append(ObjectIdentifier(request)) }
            }
            condition.lock()
            watched.removeAll { finished.contains(ObjectIdentifier($0)) }
            condition.unlock()
            usleep(useconds_t(interval * 1e6))
        }
    }
}
