import Foundation

/// Console output for an SPMD job: by default only rank 0 speaks, so N ranks print one line,
/// not N interleaved copies.
public struct Log: Sendable {
    public let rank: Int
    public let isVerbose: Bool

    public init(rank: Int, verbose: Bool = false) {
        self.rank = rank
        self.isVerbose = verbose
    }

    /// A line on standard output from rank 0.
    public func info(_ message: @autoclosure () -> String) {
        guard rank == 0 else { return }
        Log.write(message() + "\n", to: .standardOutput)
    }

    /// A line on standard output from rank 0 when `--verbose` was given.
    public func debug(_ message: @autoclosure () -> String) {
        guard isVerbose, rank == 0 else { return }
        Log.write(message() + "\n", to: .standardOutput)
    }

    /// A warning on standard error from rank 0.
    public func warning(_ message: @autoclosure () -> String) {
        guard rank == 0 else { return }
        Log.write("meshlm: warning: \(message())\n", to: .standardError)
    }

    /// A line on standard output from this rank, prefixed with it (for rank-specific facts).
    public func fromEveryRank(_ message: @autoclosure () -> String) {
        Log.write("[rank \(rank)] \(message())\n", to: .standardOutput)
    }

    public enum Stream: Sendable { case standardOutput, standardError }

    /// Writes text unbuffered, so lines from a crashing job are not lost in a buffer.
    public static func write(_ text: String, to stream: Stream) {
        let handle = stream == .standardOutput ? FileHandle.standardOutput : FileHandle.standardError
        handle.write(Data(text.utf8))
    }
}
