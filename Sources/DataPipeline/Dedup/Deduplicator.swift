import Foundation
import Runtime

/// `meshlm data dedup` across ranks (docs/data.md, "Deduplication"):
///
/// 1. **Signatures** — each rank reads its work units and stores per document an exact-text
///    hash and MinHash band keys (`OUT/.work/signatures/`); finished units are in the ledger.
/// 2. **Buckets** — every (bucket, document) entry goes by all-to-all to the rank owning that
///    slice of the bucket space, which sorts them (spilling sorted runs past `--memory-mb`);
///    documents sharing a bucket become candidate pairs (each to the smallest in the bucket),
///    sent to the rank holding the later document, optionally verified by exact Jaccard.
/// 3. **Clusters** — connected components across ranks (`ComponentResolver`); the kept
///    document of each is the one first in input order, independent of the rank count.
/// 4. **Output** — each rank rewrites its units: kept lines unchanged, removed ones as
///    `{"id","duplicate_of"}` rows; units finished before a crash are skipped.
public final class Deduplicator {
    public let options: DedupOptions
    private let world: Communicator
    private let log: Log
    private let units: [WorkUnit]
    private let mine: [WorkUnit]
    /// The rank that reads and writes each unit.
    private let unitOwner: [Int]
    private let output: StageOutput
    private let signatureDirectory: String
    private let spillDirectory: String
    private let signatureLedger: ProgressLedger
    private let outputLedger: ProgressLedger
    private let killAfter: (stage: String, units: Int)?

    /// Prepares the output directory and ledgers; every rank calls this with the same arguments.
    public init(units: [WorkUnit], output directory: String, options: DedupOptions, world: Communicator, log: Log) throws {
        try options.validate()
        self.options = options
        self.world = world
        self.log = log
        self.units = units
        var owner = [Int](repeating: 0, count: units.count)
        for rank in 0..<world.size {
            for unit in WorkPlan.assignment(units, rank: rank, size: world.size) { owner[unit.index] = rank }
        }
        unitOwner = owner
        mine = WorkPlan.assignment(units, rank: world.rank, size: world.size)
        let fingerprint = options.fingerprint + "\n" + units.map { "\($0.path) \($0.bytes)" }.joined(separator: "\n") + "\n"
        // Rank 0 creates the directories and plan files first, so ranks never race on them; the
        // others then find and check them.
        let open = { () throws in
            (try StageOutput(directory: directory),
             try ProgressLedger(output: directory, stage: "dedup-signatures", fingerprint: fingerprint),
             try ProgressLedger(output: directory, stage: "dedup", fingerprint: fingerprint))
        }
        try world.collectively { if world.rank == 0 { _ = try open() } }
        let (stageOutput, signatures, outputs) = try world.collectively(open)
        output = stageOutput
        signatureLedger = signatures
        outputLedger = outputs
        signatureDirectory = (directory as NSString).appendingPathComponent(".work/signatures")
        spillDirectory = (directory as NSString).appendingPathComponent(".work/spill-rank\(world.rank)")
        let folders = [signatureDirectory, spillDirectory]
        try world.collectively {
            for path in folders {
                do {
                    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
                } catch {
                    throw DataError("\(path): cannot be created: \(FileProblem.reason(error, path: path)); choose another --output")
                }
            }
        }
        // A test hook: `MESHLM_TEST_KILL_AFTER=signatures:N` or `output:N` makes this process
        // SIGKILL itself after finishing N units of that pass, to test resuming after `kill -9`.
        if let hook = ProcessInfo.processInfo.environment["MESHLM_TEST_KILL_AFTER"], let colon = hook.firstIndex(of: ":"),
           let count = Int(hook[hook.index(after: colon)...]) {
            killAfter = (String(hook[..<colon]), count)
        } else {
            killAfter = nil
        }
    }

    private func signaturePath(_ unit: WorkUnit) -> String {
        (signatureDirectory as NSString).appendingPathComponent("\(unit.paddedIndex).bin")
    }

    private func idsPath(_ unit: WorkUnit) -> String {
        (signatureDirectory as NSString).appendingPathComponent("\(unit.paddedIndex).ids")
    }

    private func killIfAsked(_ stage: String, finished: Int) {
        if let killAfter, killAfter.stage == stage, killAfter.units == finished { kill(getpid(), SIGKILL) }
    }

    /// Runs all passes; every rank returns the same stats.
    public func run() throws -> DedupStats {
        let start = monotonicSeconds()
        var stats = DedupStats()
        stats.ranks = world.size
        // Reading and writing happen inside `collectively`, so a bad input on one rank ends every
        // rank with that one message instead of leaving them waiting in the exchange.
        var phaseStart = monotonicSeconds()
        let (documents, textBytes, skipped) = try world.collectively { try computeSignatures() }
        func phaseDone(_ name: String) {
            let now = monotonicSeconds()
            log.debug(String(format: "dedup: %@ took %.3f s on rank 0", name, now - phaseStart))
            phaseStart = now
        }
        phaseDone("signatures")
        var exchange = BucketExchange(world: world, options: options, spillDirectory: spillDirectory, unitOwner: unitOwner)
        let candidates = try exchange.candidatePairs(signatureFiles: mine.map(signaturePath))
        phaseDone("bucket exchange")
        var edges = candidates.exact + candidates.near
        if options.verifyJaccard {
            let verifier = JaccardVerifier(world: world, options: options, units: units, unitOwner: unitOwner)
            let verified = try verifier.verify(candidates.near)
            stats.rejectedPairs = Int(try world.allreduce(Int64(candidates.near.count - verified.count), .sum))
            edges = candidates.exact + verified
        }
        phaseDone("verification")
        let (labels, rounds) = try ComponentResolver(world: world).resolve(edges: edges)
        let duplicates = try resolveDuplicateIds(labels: labels)
        phaseDone("clusters")
        try world.collectively { try writeOutputs(duplicates: duplicates) }
        phaseDone("output")

        var counts = [Int64(documents), Int64(textBytes), Int64(skipped), Int64(candidates.exactDuplicates),
                      Int64(candidates.exact.count + candidates.near.count), Int64(labels.filter { $0.key == $0.value }.count),
                      Int64(labels.filter { $0.key != $0.value }.count), Int64(exchange.spilledRuns)]
        try world.allreduce(&counts, .sum)
        stats.documents = Int(counts[0])
        stats.textBytes = Int(counts[1])
        stats.skipped = Int(counts[2])
        stats.exactDuplicates = Int(counts[3])
        stats.candidatePairs = Int(counts[4])
        stats.clusters = Int(counts[5])
        stats.nearDuplicates = Int(counts[6]) - stats.exactDuplicates
        stats.kept = stats.documents - Int(counts[6])
        stats.spilledRuns = Int(counts[7])
        stats.rounds = rounds
        try world.barrier()
        stats.seconds = try world.allreduce(monotonicSeconds() - start, .max)
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        // ru_maxrss is in kilobytes on Linux.
        stats.peakResidentMegabytes = try world.allreduce(Double(usage.ru_maxrss) / 1024, .max)
        try world.collectively {
            guard world.rank == 0 else { return }
            try output.writeRemovedList(units: units)
            try writeSkippedList()
            let writer = try AtomicFileWriter(path: (output.directory as NSString).appendingPathComponent("stats.json"))
            try writer.write(Array(stats.json.utf8))
            try writer.finish()
        }
        try world.barrier()
        return stats
    }

    // MARK: Pass 1: signatures

    /// Signatures of this rank's unfinished units; returns this rank's totals (finished units
    /// from their ledger summaries).
    private func computeSignatures() throws -> (documents: Int, textBytes: Int, skipped: Int) {
        var totals = (documents: 0, textBytes: 0, skipped: 0)
        let progress = ProgressLine(label: "dedup signatures (rank 0)", total: mine.reduce(0) { $0 + $1.bytes }, unit: "B", log: log,
                                    secondaryUnit: "docs")
        var shingles = ShingleHasher(ngramSize: options.ngramSize)
        let minHasher = MinHasher(bands: options.bands, rows: options.rows)
        var normalizer = ExactNormalizer()
        var finishedNow = 0
        for unit in mine {
            if let summary = signatureLedger.summary(of: unit) {
                let (documents, textBytes, reasons) = Self.parseSummary(summary)
                totals.documents += documents
                totals.textBytes += textBytes
                totals.skipped += reasons.count
                progress.advance(by: unit.bytes)
                continue
            }
            let reader = try RecordReader(unit: unit, options: options.reader)
            var signatures = [DocumentSignature]()
            var ids = [String]()
            var reported = 0
            while let record = try reader.next() {
                var text = record.text
                let exact = options.exact ? normalizer.hash(&text) : (0, 0)
                var bandKeys = [UInt64]()
                if options.minhash {
                    bandKeys = shingles.withShingles(&text) { shingles in
                        shingles.isEmpty ? [] : minHasher.bandKeys(minHasher.signature(of: shingles))
                    }
                }
                signatures.append(DocumentSignature(ordinal: DocumentSignature.ordinal(unit: unit.index, line: record.source.line),
                                                    exactHigh: exact.0, exactLow: exact.1, bandKeys: bandKeys,
                                                    textBytes: UInt64(text.utf8.count)))
                ids.append(record.id)
                progress.advance(by: reader.fileBytesRead - reported, secondary: 1)
                reported = reader.fileBytesRead
            }
            progress.advance(by: unit.bytes - reported)
            for skip in reader.skipped { Log.write("meshlm: warning: skipped \(skip.reason)\n", to: .standardError) }
            try SignatureFile.write(signatures, ids: ids, path: signaturePath(unit), idsPath: idsPath(unit))
            let textBytes = signatures.reduce(0) { $0 + Int($1.textBytes) }
            var summary = "documents=\(signatures.count) text_bytes=\(textBytes)\n"
            for skip in reader.skipped { summary += skip.reason.replacingOccurrences(of: "\n", with: " ") + "\n" }
            try signatureLedger.markFinished(unit, summary: Array(summary.utf8))
            totals.documents += signatures.count
            totals.textBytes += textBytes
            totals.skipped += reader.skipped.count
            finishedNow += 1
            killIfAsked("signatures", finished: finishedNow)
        }
        progress.finish()
        return totals
    }

    private static func parseSummary(_ bytes: [UInt8]) -> (documents: Int, textBytes: Int, skipped: [String]) {
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: true)
        var documents = 0, textBytes = 0
        for field in (lines.first ?? "").split(separator: " ") {
            let parts = field.split(separator: "=")
            guard parts.count == 2, let value = Int(parts[1]) else { continue }
            if parts[0] == "documents" { documents = value }
            if parts[0] == "text_bytes" { textBytes = value }
        }
        return (documents, textBytes, lines.dropFirst().map(String.init))
    }

    /// `OUT/skipped.txt`: every skipped input, in unit order (rank 0, at the end).
    private func writeSkippedList() throws {
        var text = ""
        for unit in units {
            if let summary = signatureLedger.summary(of: unit) {
                for reason in Self.parseSummary(summary).skipped { text += reason + "\n" }
            }
        }
        let path = (output.directory as NSString).appendingPathComponent("skipped.txt")
        if text.isEmpty {
            unlink(path)
            return
        }
        let writer = try AtomicFileWriter(path: path)
        try writer.write(Array(text.utf8))
        try writer.finish()
    }

    // MARK: Pass 3: who is a duplicate of whom, by id

    /// For this rank's documents that are duplicates: ordinal → the kept document's id.
    private func resolveDuplicateIds(labels: [UInt64: UInt64]) throws -> [UInt64: String] {
        // Owners tell each duplicate's reader rank which document it duplicates.
        var notices = [[UInt64]](repeating: [], count: world.size)
        for (vertex, label) in labels.sorted(by: { $0.key < $1.key }) where vertex != label {
            notices[unitOwner[DocumentSignature.unit(of: vertex)]] += [vertex, label]
        }
        var keptOf = [UInt64: UInt64]()
        for block in try world.alltoall(notices) {
            for index in stride(from: 0, to: block.count, by: 2) { keptOf[block[index]] = block[index + 1] }
        }
        // Ask the kept documents' readers for their ids.
        var requests = [[UInt64]](repeating: [], count: world.size)
        for kept in Set(keptOf.values).sorted() { requests[unitOwner[DocumentSignature.unit(of: kept)]].append(kept) }
        let asked = try world.alltoall(requests)
        var idsByUnit = [Int: [UInt64: String]]()
        var answers = [[UInt8]](repeating: [], count: world.size)
        for (rank, block) in asked.enumerated() {
            for ordinal in block {
                let unit = DocumentSignature.unit(of: ordinal)
                if idsByUnit[unit] == nil { idsByUnit[unit] = try SignatureFile.readIds(path: idsPath(units[unit])) }
                let id = idsByUnit[unit]?[ordinal] ?? ""
                withUnsafeBytes(of: UInt64(id.utf8.count).littleEndian) { answers[rank] += $0 }
                answers[rank] += id.utf8
            }
        }
        let replies = try world.alltoall(answers)
        var idOf = [UInt64: String]()
        for rank in 0..<world.size {
            var offset = 0
            let bytes = replies[rank]
            for ordinal in requests[rank] {
                let length = (0..<8).reduce(0) { $0 | Int(bytes[offset + $1]) << (8 * $1) }
                idOf[ordinal] = String(decoding: bytes[(offset + 8)..<(offset + 8 + length)], as: UTF8.self)
                offset += 8 + length
            }
        }
        return keptOf.mapValues { idOf[$0] ?? "" }
    }

    // MARK: Pass 4: outputs

    private func writeOutputs(duplicates: [UInt64: String]) throws {
        var finishedNow = 0
        let progress = ProgressLine(label: "dedup output (rank 0)", total: mine.count, unit: "units", log: log)
        for unit in mine {
            defer { progress.advance() }
            if outputLedger.isFinished(unit) { continue }
            var readerOptions = options.reader
            readerOptions.decodeText = false
            let reader = try RecordReader(unit: unit, options: readerOptions)
            // zstd level 1: about twice level 3's speed; kept documents are re-read by the next
            // stage, not archived.
            let kept = try AtomicFileWriter(path: output.keptPath(unit), compressionLevel: 1)
            let removed = try AtomicFileWriter(path: output.removedPath(unit))
            var keptCount = 0, removedCount = 0
            while let record = try reader.next() {
                let ordinal = DocumentSignature.ordinal(unit: unit.index, line: record.source.line)
                if let original = duplicates[ordinal] {
                    try removed.writeLine(RemovedRecord(id: record.id, reason: .duplicate(of: original)).jsonLine)
                    removedCount += 1
                } else {
                    try kept.writeLine(record.jsonLine(textField: options.reader.textField))
                    keptCount += 1
                }
            }
            // A unit whose documents were all removed gets no kept file (an empty file would be
            // an input error for the next stage).
            if keptCount > 0 { try kept.finish() } else { kept.abandon() }
            try removed.finish()
            try outputLedger.markFinished(unit, summary: Array("kept=\(keptCount) removed=\(removedCount)\n".utf8))
            finishedNow += 1
            killIfAsked("output", finished: finishedNow)
        }
        progress.finish()
    }
}
