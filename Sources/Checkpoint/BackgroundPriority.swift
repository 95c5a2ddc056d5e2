import CSupport
import Runtime

/// How the background checkpoint writer thread yields the cores to training
/// (`checkpoint.writer_priority`; docs/checkpoints.md, "Asynchronous saving").
public enum BackgroundPriority: String, ConfigChoice {
    /// Linux SCHED_IDLE: the writer runs only on a core training leaves idle, and a training
    /// thread that wakes takes its core back at once (measured: docs/benchmarks.md, "Checkpoints").
    case idle
    /// The normal class at `checkpoint.writer_nice`: the writer keeps a small share of a busy core.
    case nice

    /// Applies the priority to the calling thread; `nice` is the nice value for `.nice`.
    func apply(nice: Int32) {
        switch self {
        case .idle: _ = meshlm_set_thread_idle()
        case .nice: if nice != 0 { _ = meshlm_set_thread_nice(nice) }
        }
    }
}
