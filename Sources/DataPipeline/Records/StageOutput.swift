import Foundation
import Runtime

/// The layout of a data stage's output directory (DESIGN §5), shared by `data clean` and
/// `data dedup`:
///
///     OUT/kept/NNNNN.jsonl.zst     kept documents of work unit NNNNN, every input field kept
///     OUT/removed/NNNNN.jsonl      that unit's removed rows ({"id","filter"|"duplicate_of"})
///     OUT/removed.jsonl            all removed rows in unit order, written at the end
///     OUT/.progress/STAGE/…        the ledger of finished units (`ProgressLedger`)
///
/// One unit's files are written by one rank under temporary names and renamed when complete,
/// so the directory holds the same bytes whatever the rank count.
public struct StageOutput: Sendable {
    public let directory: String

    /// Creates the directory and its `kept/` and `removed/` folders.
    public init(directory: String) throws(DataError) {
        self.directory = directory
        for folder in ["kept", "removed"] {
            let path = (directory as NSString).appendingPathComponent(folder)
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            } catch {
                throw DataError("\(path): cannot be created: \(FileProblem.reason(error, path: path)); choose another --output")
            }
        }
    }

    public func keptPath(_ unit: WorkUnit) -> String {
        (directory as NSString).appendingPathComponent("kept/\(unit.paddedIndex).jsonl.zst")
    }

    public func removedPath(_ unit: WorkUnit) -> String {
        (directory as NSString).appendingPathComponent("removed/\(unit.paddedIndex).jsonl")
    }

    public var removedListPath: String { (directory as NSString).appendingPathComponent("removed.jsonl") }

    /// Concatenates every unit's removed rows, in unit order, into `removed.jsonl` (one rank
    /// calls this after all units are finished).
    public func writeRemovedList(units: [WorkUnit]) throws(DataError) {
        let writer = try AtomicFileWriter(path: removedListPath)
        for unit in units {
            guard let bytes = FileManager.default.contents(atPath: removedPath(unit)) else {
                writer.abandon()
                throw DataError("\(removedPath(unit)): missing (the unit's removed rows); rerun the stage to finish it")
            }
            try writer.write([UInt8](bytes))
        }
        try writer.finish()
    }
}
