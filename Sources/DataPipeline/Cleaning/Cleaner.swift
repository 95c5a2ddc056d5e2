import Foundation
import Runtime

/// `meshlm data clean` across ranks (docs/data.md, "Cleaning"): each rank reads its work units
/// (input files dealt by size), runs every document through the recipe's operators in order,
/// and writes per unit the kept records (every input field kept, the text replaced) and the
/// removed rows. Units finished before a crash are in the ledger and skipped on a rerun; the
/// totals come from the ledger summaries in unit order, so outputs and stats are the same
/// whatever the rank count.
public final class Cleaner {
    private let recipe: CleaningRecipe
    private let operators: [any CleaningOperator]
    private let reader: RecordReaderOptions
    private let world: Communicator
    private let log: Log
    private let units: [WorkUnit]
    private let mine: [WorkUnit]
    private let output: StageOutput
    private let ledger: ProgressLedger
    /// Whether an operator reads the record's `url` field (parsed only then).
    private let needsURL: Bool
    private let killAfterUnits: Int?

    /// Prepares the output directory and ledger; every rank calls this with the same arguments.
    public init(units: [WorkUnit], output directory: String, recipe: CleaningRecipe, reader: RecordReaderOptions,
                world: Communicator, log: Log) throws {
        self.recipe = recipe
        self.reader = reader
        self.world = world
        self.log = log
        self.units = units
        operators = try world.collectively { try recipe.makeOperators() }
        needsURL = operators.contains { $0 is URLBlocklistFilter }
        mine = WorkPlan.assignment(units, rank: world.rank, size: world.size)
        let fingerprint = Self.fingerprint(recipe: recipe, reader: reader, units: units)
        let open = { () throws in
            (try StageOutput(directory: directory), try ProgressLedger(output: directory, stage: "clean", fingerprint: fingerprint))
        }
        // Rank 0 creates the directories and plan file first, so ranks never race on them.
        try world.collectively { if world.rank == 0 { _ = try open() } }
        (output, ledger) = try world.collectively(open)
        // A test hook: `MESHLM_TEST_KILL_AFTER=clean:N` makes this process SIGKILL itself after
        // finishing N units, to test resuming after `kill -9`.
        if let hook = ProcessInfo.processInfo.environment["MESHLM_TEST_KILL_AFTER"], hook.hasPrefix("clean:") {
            killAfterUnits = Int(hook.dropFirst("clean:".count))
        } else {
            killAfterUnits = nil
        }
    }

    static func fingerprint(recipe: CleaningRecipe, reader: RecordReaderOptions, units: [WorkUnit]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let recipeText = (try? encoder.encode(recipe)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        return "clean \(recipeText)\ntext_field=\(reader.textField) id_field=\(reader.idField) on_error=\(reader.onError.rawValue)\n"
            + units.map { "\($0.path) \($0.bytes)" }.joined(separator: "\n") + "\n"
    }

    /// Cleans this rank's unfinished units, then (all ranks) totals the ledger; rank 0 writes
    /// `removed.jsonl` and `stats.json`. Every rank returns the same stats.
    public func run() throws -> CleaningStats {
        let start = monotonicSeconds()
        try world.collectively { try cleanUnits() }
        try world.barrier()
        var stats = try world.collectively { try totals() }
        stats.ranks = world.size
        stats.seconds = try world.allreduce(monotonicSeconds() - start, .max)
        let finalStats = stats
        try world.collectively {
            guard world.rank == 0 else { return }
            try output.writeRemovedList(units: units)
            let writer = try AtomicFileWriter(path: (output.directory as NSString).appendingPathComponent("stats.json"))
            try writer.write(Array(finalStats.json.utf8))
            try writer.finish()
        }
        try world.barrier()
        return stats
    }

    private func cleanUnits() throws {
        let progress = ProgressLine(label: "clean (rank 0)", total: mine.reduce(0) { $0 + $1.bytes }, unit: "file B", log: log,
                                    secondaryUnit: "docs")
        var finishedNow = 0
        for unit in mine {
            if ledger.isFinished(unit) {
                progress.advance(by: unit.bytes)
                continue
            }
            let reported = try clean(unit, progress: progress)
            progress.advance(by: unit.bytes - reported)
            finishedNow += 1
            if let killAfterUnits, killAfterUnits == finishedNow { kill(getpid(), SIGKILL) }
        }
        progress.finish()
    }

    /// Cleans one unit and records it in the ledger; returns the file bytes reported to `progress`.
    private func clean(_ unit: WorkUnit, progress: ProgressLine) throws -> Int {
        let records = try RecordReader(unit: unit, options: reader)
        let kept = try AtomicFileWriter(path: output.keptPath(unit))
        let removed = try AtomicFileWriter(path: output.removedPath(unit))
        var stats = CleaningStats(operatorNames: operators.map(\.name))
        var reported = 0
        while var record = try records.next() {
            stats.documents += 1
            stats.textBytesIn += record.text.utf8.count
            var document = CleaningDocument(text: record.text, url: needsURL ? Self.url(of: record) : nil)
            var droppedBy: (name: String, reason: String)?
            for (index, operation) in operators.enumerated() {
                var effect = OperatorEffect()
                stats.operators[index].documentsIn += 1
                let outcome = operation.apply(to: &document, effect: &effect)
                if effect.charactersChanged > 0 { stats.operators[index].documentsChanged += 1 }
                stats.operators[index].charactersChanged += effect.charactersChanged
                for (kind, count) in effect.replacements { stats.operators[index].replacements[kind, default: 0] += count }
                if case .drop(let reason) = outcome {
                    stats.operators[index].dropped += 1
                    droppedBy = (operation.name, reason)
                    break
                }
            }
            if let droppedBy {
                try removed.writeLine(Self.removedRow(id: record.id, filter: droppedBy.name, reason: droppedBy.reason))
            } else {
                if document.text != record.text { record.text = document.text }
                stats.kept += 1
                stats.textBytesOut += document.text.utf8.count
                try kept.writeLine(record.jsonLine(textField: reader.textField))
            }
            progress.advance(by: records.fileBytesRead - reported, secondary: 1)
            reported = records.fileBytesRead
        }
        for skip in records.skipped { Log.write("meshlm: warning: skipped \(skip.reason)\n", to: .standardError) }
        stats.skipped = records.skipped.count
        // A unit whose documents were all removed gets no kept file (an empty file would be an
        // input error for the next stage).
        if stats.kept > 0 { try kept.finish() } else { kept.abandon() }
        try removed.finish()
        try ledger.markFinished(unit, summary: Array((stats.countsJSON + "\n").utf8))
        return reported
    }

    /// `{"id":…,"filter":…,"reason":…}`: DESIGN §5's row plus the measured rule that failed.
    static func removedRow(id: String, filter: String, reason: String) -> [UInt8] {
        var row = RemovedRecord(id: id, reason: .filter(filter)).jsonLine
        row.removeLast()  // the closing brace
        row += Array(",\"reason\":".utf8)
        JSONString.appendQuoted(reason, to: &row)
        row.append(UInt8(ascii: "}"))
        return row
    }

    /// The record's top-level `url` string field, if any.
    static func url(of record: DocumentRecord) -> String? {
        guard let line = record.originalLine else { return nil }
        return line.withUnsafeBufferPointer { bytes -> String? in
            guard let scanned = try? JSONObjectScanner.scan(bytes) else { return nil }
            let key = Array("url".utf8)
            guard let field = scanned.fields.last(where: { !$0.keyHasEscapes && bytes[$0.key].elementsEqual(key) }),
                  field.kind == .string else { return nil }
            return JSONString.decode(UnsafeBufferPointer(rebasing: bytes[field.value]), hasEscapes: field.valueHasEscapes)
        }
    }

    /// The sum of every unit's ledger summary, in unit order.
    private func totals() throws -> CleaningStats {
        var stats = CleaningStats(operatorNames: operators.map(\.name))
        let decoder = JSONDecoder()
        for unit in units {
            guard let summary = ledger.summary(of: unit) else {
                throw DataError("\(ledger.directory): unit \(unit.paddedIndex) (\(unit.path)) is not finished; rerun the stage")
            }
            do {
                stats.add(try decoder.decode(CleaningStats.self, from: Data(summary)))
            } catch {
                throw DataError("\(ledger.directory)/\(unit.paddedIndex).done: unreadable summary (\(describe(error))); delete it and rerun")
            }
        }
        return stats
    }
}
