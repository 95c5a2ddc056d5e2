import CSupport

/// SIGTERM and SIGUSR1 as requests to stop cleanly: Slurm sends them before preempting or at
/// the time limit (`--signal=B:USR1@60`), and mpirun forwards them to the ranks. The handler only
/// records the request; long-running loops poll `requested` between units of work and agree on
/// it across ranks before acting.
public enum StopSignals {
    /// Installs the handlers (idempotent).
    public static func install() { meshlm_install_stop_signals() }

    /// The first stop signal received (e.g. "SIGTERM"), or nil.
    public static var requested: String? {
        switch meshlm_stop_signal() {
        case 0: nil
        case SIGTERM: "SIGTERM"
        case SIGUSR1: "SIGUSR1"
        case let other: "signal \(other)"
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
