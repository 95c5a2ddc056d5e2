import Checkpoint
import Foundation
import Parallel
import Runtime

/// Saves the trainer's checkpoints, asynchronously when `checkpoint.async` is on, in three
/// parts (docs/checkpoints.md, "Asynchronous saving"):
/// 1. `save` (at the step boundary where the interval falls) only stages: it creates the step
///    directory and hands the trainer a `StateSnapshot` of its owned slices, which the next
///    optimizer step fills as it overwrites them (copy-before-write, in AdamW's own pass).
/// 2. `commitIfReady` (called before every step) starts the background thread that compresses
///    and writes the shard file once the snapshot is complete, and at a later boundary commits
///    (index, COMMITTED, `latest`, keep-K pruning) once every rank's file is written.
/// 3. The next `save`, a stop, or the end of the run (`finish`) complete what is left and wait.
/// At most one save is in flight.
///
/// Every method is collective: all ranks call it at the same step.
public final class CheckpointSaver {
    public let trainer: Trainer
    public let extras: CheckpointExtras
    public var isAsynchronous: Bool
    /// Asynchronous saves copy lazily, in the next optimizer step (true), or at the boundary
    /// (false: the earlier behaviour, kept for `meshlm bench checkpoint --eager-copy`).
    public var copiesLazily = true
    private var pending: (writer: CheckpointWriter, metadata: Data, snapshot: StateSnapshot?, isWriting: Bool)?
    /// The staging buffer every save copies into: allocated once, reused.
    private let staging = CheckpointStaging()

    public init(trainer: Trainer, extras: CheckpointExtras, asynchronous: Bool? = nil) {
        self.trainer = trainer
        self.extras = extras
        self.isAsynchronous = asynchronous ?? trainer.config.checkpoint.async
        // Asynchronous saves fill the buffer inside a training step: map its pages now, at
        // start-up, not in the first save's step.
        if isAsynchronous && trainer.config.checkpoint.interval > 0 {
            staging.reserve(trainer.checkpointShareCount, touching: true)
        }
    }

    /// Whether a save was staged and is not committed yet.
    public var hasPendingSave: Bool { pending != nil }

    /// Starts a checkpoint of the state before step `nextStep`, first committing the save in
    /// flight (waiting for it). Synchronous saves return the committed step directory; async
    /// ones return nil (the path is reported when the commit happens).
    @discardableResult
    public func save(nextStep: Int) throws -> String? {
        if let committed = try finish() { trainer.log.info("checkpoint \(committed) committed") }
        let (writer, metadata, snapshot) = try trainer.stageCheckpoint(nextStep: nextStep, staging: staging, lazily: isAsynchronous && copiesLazily)
        guard isAsynchronous else {
            return try writer.commit(metadata: metadata, extraFiles: extras.files, keep: trainer.config.checkpoint.keep)
        }
        pending = (writer, metadata, snapshot, false)
        return nil
    }

    /// Starts the background write once the snapshot is complete (every rank completes it in
    /// the same step, so ranks agree without communicating), and commits the save in flight if
    /// every rank's shard file is written; returns its directory then, nil otherwise. One small
    /// allreduce while a save is being written, nothing otherwise.
    public func commitIfReady() throws -> String? {
        guard let current = pending else { return nil }
        if !current.isWriting {
            guard current.snapshot?.isComplete ?? true else { return nil }
            current.writer.writeShardInBackground()
            pending?.isWriting = true
            return nil
        }
        // Commit once every rank's file is written, or at once when one rank's write failed: the
        // error (a full disk) ends the run at this step, not when the slowest rank is done.
        var states: [Int32] = [current.writer.isShardWritten ? 0 : 1, current.writer.shardWriteFailed ? 1 : 0]
        try trainer.worldCommunicator.allreduce(&states, .max)
        return states[0] == 0 || states[1] == 1 ? try finish() : nil
    }

    /// Waits for the save in flight (if any) and commits it; returns its directory. A snapshot
    /// no step completed is copied now (nothing changed it since the save), and its shard file
    /// written in the commit on the rank's kernel threads.
    @discardableResult
    public func finish() throws -> String? {
        guard let pending else { return nil }
        self.pending = nil
        if let snapshot = pending.snapshot, !snapshot.isComplete {
            trainer.parameters.snapshot = nil
            snapshot.complete()
        }
        return try pending.writer.commit(metadata: pending.metadata, extraFiles: extras.files, keep: trainer.config.checkpoint.keep)
    }
}
