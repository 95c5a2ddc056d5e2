import Checkpoint
import Foundation
import Runtime

/// Saves the trainer's checkpoints, asynchronously when `checkpoint.async` is on: `save` pays
/// only for copying this rank's owned slices into staging buffers and starts a background
/// thread that compresses and writes the shard file; the collective commit (index, COMMITTED,
/// `latest`, keep-K pruning) happens at a later step boundary: `commitIfReady` (called before
/// every step) commits once every rank's file is written, and the next `save`, a stop, or the
/// end of the run (`finish`) wait for it. At most one save is in flight.
///
/// Every method is collective: all ranks call it at the same step.
public final class CheckpointSaver {
    public let trainer: Pretrainer
    public let extras: CheckpointExtras
    public var isAsynchronous: Bool
    private var pending: (writer: CheckpointWriter, metadata: Data)?
    /// The staging buffer every save copies into: allocated once, reused.
    private let staging = CheckpointStaging()

    public init(trainer: Pretrainer, extras: CheckpointExtras, asynchronous: Bool? = nil) {
        self.trainer = trainer
        self.extras = extras
        self.isAsynchronous = asynchronous ?? trainer.config.checkpoint.async
    }

    /// Whether a save was staged and is not committed yet.
    public var hasPendingSave: Bool { pending != nil }

    /// Starts a checkpoint of the state before step `nextStep`, first committing the save in
    /// flight (waiting for it). Synchronous saves return the committed step directory; async
    /// ones return nil (the path is reported when the commit happens).
    @discardableResult
    public func save(nextStep: Int) throws -> String? {
        if let committed = try finish() { trainer.log.info("checkpoint \(committed) committed") }
        let (writer, metadata) = try trainer.stageCheckpoint(nextStep: nextStep, staging: staging)
        guard isAsynchronous else {
            return try writer.commit(metadata: metadata, extraFiles: extras.files, keep: trainer.config.checkpoint.keep)
        }
        writer.writeShardInBackground()
        pending = (writer, metadata)
        return nil
    }

    /// Commits the save in flight if every rank's shard file is written; returns its directory
    /// then, nil otherwise. One small allreduce while a save is pending, nothing when none is.
    public func commitIfReady() throws -> String? {
        guard let pending else { return nil }
        let written = try trainer.worldCommunicator.allreduce(Int32(pending.writer.isShardWritten ? 1 : 0), .min) == 1
        return written ? try finish() : nil
    }

    /// Waits for the save in flight (if any) and commits it; returns its directory.
    @discardableResult
    public func finish() throws -> String? {
        guard let pending else { return nil }
        self.pending = nil
        return try pending.writer.commit(metadata: pending.metadata, extraFiles: extras.files, keep: trainer.config.checkpoint.keep)
    }
}
