import Foundation

/// The record of a stage's finished work units, so a rerun after a crash (even `kill -9`) skips
/// them: `OUT/.progress/STAGE/NNNNN.done`, each holding the unit's summary line (its counts),
/// written under a temporary name and renamed after the unit's outputs were renamed into place.
/// `plan` in the same directory fingerprints the inputs and options; a rerun with different ones
/// is refused rather than mixing outputs of two runs.
public struct ProgressLedger: Sendable {
    public let directory: String

    /// Opens (creating) the ledger of `stage` under `output`, checking `fingerprint` (any text
    /// that changes when inputs or options change) against the one a previous run recorded.
    public init(output: String, stage: String, fingerprint: String) throws(DataError) {
        directory = ((output as NSString).appendingPathComponent(".progress") as NSString).appendingPathComponent(stage)
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw DataError("\(directory): cannot be created: \(error.localizedDescription)")
        }
        let planPath = (directory as NSString).appendingPathComponent("plan")
        if let recorded = FileManager.default.contents(atPath: planPath) {
            guard String(decoding: recorded, as: UTF8.self) == fingerprint else {
                throw DataError("\(output): holds a partial run with different inputs or options "
                                + "(\(planPath) differs); use another --output or delete this one")
            }
        } else {
            let writer = try AtomicFileWriter(path: planPath)
            try writer.write(Array(fingerprint.utf8))
            try writer.finish()
        }
    }

    private func path(_ unit: WorkUnit) -> String {
        (directory as NSString).appendingPathComponent(unit.paddedIndex + ".done")
    }

    /// The summary recorded for `unit`, or nil when it is not finished.
    public func summary(of unit: WorkUnit) -> [UInt8]? {
        FileManager.default.contents(atPath: path(unit)).map { [UInt8]($0) }
    }

    public func isFinished(_ unit: WorkUnit) -> Bool {
        FileManager.default.fileExists(atPath: path(unit))
    }

    /// Records `unit` as finished with `summary`; call after its outputs are in place.
    public func markFinished(_ unit: WorkUnit, summary: [UInt8]) throws(DataError) {
        let writer = try AtomicFileWriter(path: path(unit))
        try writer.write(summary)
        try writer.finish()
    }
}
