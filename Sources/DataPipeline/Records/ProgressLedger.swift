import Foundation
import Runtime

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
            throw DataError("\(directory): cannot be created: \(FileProblem.reason(error, path: directory)); choose another --output")
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

    /// Whether `output` holds a ledger of `stage` (a run that did not finish).
    public static func exists(output: String, stage: String) -> Bool {
        let directory = ((output as NSString).appendingPathComponent(".progress") as NSString).appendingPathComponent(stage)
        return FileManager.default.fileExists(atPath: directory)
    }

    private func path(_ index: Int) -> String {
        let digits = String(index)
        let padded = digits.count >= 5 ? digits : String(repeating: "0", count: 5 - digits.count) + digits
        return (directory as NSString).appendingPathComponent(padded + ".done")
    }

    /// The summary recorded for `unit`, or nil when it is not finished.
    public func summary(of unit: WorkUnit) -> [UInt8]? { summary(at: unit.index) }

    /// The summary recorded for the part numbered `index` (a stage whose parts are not input
    /// files, e.g. `data tokenize`'s shards), or nil when it is not finished.
    public func summary(at index: Int) -> [UInt8]? {
        FileManager.default.contents(atPath: path(index)).map { [UInt8]($0) }
    }

    public func isFinished(_ unit: WorkUnit) -> Bool {
        FileManager.default.fileExists(atPath: path(unit.index))
    }

    /// Records `unit` as finished with `summary`; call after its outputs are in place.
    public func markFinished(_ unit: WorkUnit, summary: [UInt8]) throws(DataError) {
        try markFinished(at: unit.index, summary: summary)
    }

    /// Records the part numbered `index` as finished with `summary`; call after its outputs are
    /// in place.
    public func markFinished(at index: Int, summary: [UInt8]) throws(DataError) {
        let writer = try AtomicFileWriter(path: path(index))
        try writer.write(summary)
        try writer.finish()
    }

    /// Deletes the ledger (the stage finished, or gave up), and `.progress` when no other
    /// stage's ledger is left in it.
    public func remove() {
        try? FileManager.default.removeItem(atPath: directory)
        let progress = (directory as NSString).deletingLastPathComponent
        if (try? FileManager.default.contentsOfDirectory(atPath: progress))?.isEmpty == true {
            try? FileManager.default.removeItem(atPath: progress)
        }
    }
}
