import DataPipeline
import Foundation
import Runtime
import Testing

@Suite struct RecordIOTests {
    private func unit(_ path: String) throws -> WorkUnit {
        try WorkPlan.units(inputs: [path]).units[0]
    }

    private func readAll(_ path: String, options: RecordReaderOptions = .init()) throws -> [DocumentRecord] {
        let reader = try RecordReader(unit: unit(path), options: options)
        var records = [DocumentRecord]()
        while let record = try reader.next() { records.append(record) }
        return records
    }

    @Test func unchangedRecordsAreWrittenBackByteForByte() throws {
        let directory = scratchDirectory()
        let lines = [
            #"{"id": "a-1", "text": "Caf\u00e9 \"quoted\"\nnext", "meta": {"n": [1, 2.5e3, -0.0, true, null]}, "z": "ü"}"#,
            #"  {"text":"plain","score":0.25}  "#,
            #"{"url":"x","text":"😀 emoji \ud83d\ude00 and lone \ud800 surrogate","id":42}"#,
        ]
        let path = join(directory, "docs.jsonl")
        try write(lines.joined(separator: "\n") + "\n\n", to: path)
        let records = try readAll(path)
        #expect(records.map(\.id) == ["a-1", "docs:2", "42"])
        #expect(records[0].text == "Café \"quoted\"\nnext")
        #expect(records[2].text == "😀 emoji 😀 and lone \u{FFFD} surrogate")
        #expect(records[1].source.description == "\(path):2")
        for (record, line) in zip(records, lines) {
            #expect(record.jsonLine() == Array(line.utf8))
            #expect(!record.textChanged)
        }
    }

    @Test func changedTextIsSplicedIntoTheOriginalLine() throws {
        let directory = scratchDirectory()
        let path = join(directory, "docs.jsonl")
        try write(#"{"id":"k","text":"old","tags":["a","b"],"n":1.50}"# + "\n", to: path)
        var record = try #require(try readAll(path).first)
        record.text = "new \"text\"\twith\u{01} control\nand ü"
        #expect(record.textChanged)
        let line = String(decoding: record.jsonLine(), as: UTF8.self)
        #expect(line == #"{"id":"k","text":"new \"text\"\twith\u0001 control\nand ü","tags":["a","b"],"n":1.50}"#)
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(parsed["text"] as? String == record.text)
    }

    @Test func textFilesAndDirectoriesBecomeNamedUnits() throws {
        let directory = scratchDirectory()
        try FileManager.default.createDirectory(atPath: join(directory, "b/c"), withIntermediateDirectories: true)
        try write("whole\nfile ü", to: join(directory, "b/c/note.txt"))
        try write(#"{"text":"one"}"# + "\n", to: join(directory, "a.jsonl"))
        try write("ignored", to: join(directory, "b/readme.md"))
        let (units, ignored) = try WorkPlan.units(inputs: [directory])
        #expect(units.map(\.name) == ["a", "b/c/note"])
        #expect(units.map(\.index) == [0, 1])
        #expect(ignored == 1)
        let records = try readAll(join(directory, "b/c/note.txt"))
        #expect(records.count == 1)
        #expect(records[0].id == "note")
        #expect(records[0].text == "whole\nfile ü")
        #expect(String(decoding: records[0].jsonLine(), as: UTF8.self) == #"{"id":"note","text":"whole\nfile ü"}"#)
        let sameNames = try WorkPlan.units(inputs: [join(directory, "a.jsonl"), directory]).units
        #expect(sameNames.map(\.name) == [join(directory, "a"), join(directory, "a"), join(directory, "b/c/note")])
    }

    /// The scanner and string decoder against Foundation's parser on every line of the corpus.
    @Test func textMatchesFoundationOnTheShippedCorpus() throws {
        let path = join(repositoryRoot, "data/corpus/eval.jsonl.zst")
        let records = try readAll(path)
        let raw = try Zstd.decompress([UInt8](Data(contentsOf: URL(fileURLWithPath: path))))
        let lines = raw.split(separator: 0x0A)
        #expect(records.count == lines.count)
        for (record, line) in zip(records, lines) {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
            #expect(record.text == object["text"] as? String)
            #expect(record.jsonLine() == Array(line))
        }
    }

    @Test func zstdOutputRoundTripsThroughTheReader() throws {
        let directory = scratchDirectory()
        let path = join(directory, "out.jsonl.zst")
        let writer = try AtomicFileWriter(path: path)
        var expected = [String]()
        for index in 0..<20_000 {
            let line = #"{"text":"document \#(index) "# + String(repeating: "x", count: index % 300) + "\"}"
            expected.append(line)
            try writer.writeLine(Array(line.utf8))
        }
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(FileManager.default.fileExists(atPath: writer.temporaryPath))
        try writer.finish()
        #expect(!FileManager.default.fileExists(atPath: writer.temporaryPath))
        let records = try readAll(path)
        #expect(records.map { String(decoding: $0.jsonLine(), as: UTF8.self) } == expected)
        #expect(records.last?.id == "out:20000")
    }

    @Test func badInputsNameFileAndLine() throws {
        let directory = scratchDirectory()
        func check(_ name: String, _ bytes: [UInt8], _ message: String) throws {
            let path = join(directory, name)
            try write(bytes, to: path)
            expectDataError(message.replacingOccurrences(of: "FILE", with: path)) { _ = try readAll(path) }
            let reader = try RecordReader(unit: unit(path), options: RecordReaderOptions(onError: .skip))
            var kept = 0
            while try reader.next() != nil { kept += 1 }
            #expect(reader.skipped == [SkippedInput(reason: message.replacingOccurrences(of: "FILE", with: path))])
        }
        let good = Array(#"{"text":"fine"}"#.utf8) + [0x0A]
        try check("json.jsonl", good + Array(#"{"text": "a",}"#.utf8), "FILE:2: malformed JSON at byte 14: expected a quoted field name")
        try check("unterminated.jsonl", Array(#"{"text": "a"#.utf8), "FILE:1: malformed JSON at byte 12: unterminated string")
        // Found by fuzzing (docs/fuzzing.md): a \u escape cut short once passed the scanner.
        try check("escape.jsonl", Array(#"{"text":"\u"}"#.utf8), "FILE:1: malformed JSON at byte 12: invalid \\u escape (expected 4 hex digits)")
        try check("cut.jsonl", Array(#"{"text":"\u12"#.utf8), "FILE:1: malformed JSON at byte 14: invalid \\u escape (expected 4 hex digits)")
        try check("array.jsonl", good + Array("[1,2]".utf8), "FILE:2: expected a JSON object, found an array")
        try check("missing.jsonl", Array(#"{"body":"x"}"#.utf8), "FILE:1: no 'text' field (--text-field names the field that holds the text)")
        try check("number.jsonl", good + good + Array(#"{"text":7}"#.utf8), "FILE:3: field 'text' is a number, not a string")
        try check("utf8.jsonl", Array(#"{"text":"ab"#.utf8) + [0xC3, 0x28] + Array(#""}"#.utf8), "FILE:1: invalid UTF-8 at byte 12")
        try check("id.jsonl", Array(#"{"text":"a","id":[1]}"#.utf8), "FILE:1: field 'id' is an array, not a string or number")
        try check("empty.jsonl", [], "FILE: empty file (no documents)")
        try check("blank.jsonl", Array(" \n\n".utf8), "FILE: empty file (no documents)")
        try check("empty.txt", [], "FILE: empty file (no documents)")
        try check("latin1.txt", [0x61, 0xE9, 0x62], "FILE: invalid UTF-8 at byte 2")
        try check("empty.jsonl.zst", [], "FILE:1: empty file, not a zstd stream")
        var frame = try Zstd.compress(Array(String(repeating: #"{"text":"line"}"# + "\n", count: 50).utf8))
        frame.removeLast(6)
        try check("truncated.jsonl.zst", frame, "FILE:1: truncated zstd stream (the file ends inside a frame)")
    }

    @Test func skippedLinesAreCountedAndTheRestIsRead() throws {
        let directory = scratchDirectory()
        let path = join(directory, "mixed.jsonl")
        try write("{\"text\":\"a\"}\nnot json\n{\"text\":\"b\"}\n{\"x\":1}\n", to: path)
        let reader = try RecordReader(unit: unit(path), options: RecordReaderOptions(onError: .skip))
        var texts = [String]()
        while let record = try reader.next() { texts.append(record.text) }
        #expect(texts == ["a", "b"])
        #expect(reader.skipped.map(\.reason) == [
            "\(path):2: malformed JSON at byte 1: invalid literal (expected null)",
            "\(path):4: no 'text' field (--text-field names the field that holds the text)",
        ])
    }

    @Test func assignmentCoversEveryUnitOnceAndBalancesBytes() throws {
        let units = (0..<23).map { WorkUnit(index: $0, path: "f\($0).jsonl", format: .jsonl, name: "f\($0)", bytes: 1000 + ($0 * 7919) % 5000) }
        for size in 1...5 {
            var seen = [Int]()
            var loads = [Int]()
            for rank in 0..<size {
                let mine = WorkPlan.assignment(units, rank: size - 1 - rank, size: size)
                #expect(mine.map(\.index) == mine.map(\.index).sorted())
                seen += mine.map(\.index)
                loads.append(mine.reduce(0) { $0 + $1.bytes })
            }
            #expect(seen.sorted() == Array(0..<23))
            #expect((loads.max() ?? 0) - (loads.min() ?? 0) <= 6000)
        }
    }

    @Test func ledgerRecordsFinishedUnitsAndRefusesAnotherPlan() throws {
        let output = scratchDirectory()
        let unit = WorkUnit(index: 7, path: "x.jsonl", format: .jsonl, name: "x", bytes: 1)
        let ledger = try ProgressLedger(output: output, stage: "dedup", fingerprint: "plan A")
        #expect(!ledger.isFinished(unit))
        try ledger.markFinished(unit, summary: Array("{\"kept\":3}".utf8))
        let reopened = try ProgressLedger(output: output, stage: "dedup", fingerprint: "plan A")
        #expect(reopened.isFinished(unit))
        #expect(reopened.summary(of: unit) == Array("{\"kept\":3}".utf8))
        #expect(FileManager.default.fileExists(atPath: join(output, ".progress/dedup/00007.done")))
        expectDataError("\(output): holds a partial run with different inputs or options (\(output)/.progress/dedup/plan differs); use another --output or delete this one") {
            _ = try ProgressLedger(output: output, stage: "dedup", fingerprint: "plan B")
        }
    }

    @Test func removedRowsFollowTheContract() {
        #expect(String(decoding: RemovedRecord(id: "a\"b", reason: .filter("gopher_repetition")).jsonLine, as: UTF8.self)
                == #"{"id":"a\"b","filter":"gopher_repetition"}"#)
        #expect(String(decoding: RemovedRecord(id: "x:3", reason: .duplicate(of: "x:1")).jsonLine, as: UTF8.self)
                == #"{"id":"x:3","duplicate_of":"x:1"}"#)
    }
}

@Suite struct StageOutputTests {
    @Test func removedRowsAreConcatenatedInUnitOrder() throws {
        let output = try StageOutput(directory: join(scratchDirectory(), "out"))
        let units = (0..<3).map { WorkUnit(index: $0, path: "f\($0).jsonl", format: .jsonl, name: "f\($0)", bytes: 1) }
        #expect(output.keptPath(units[2]).hasSuffix("/out/kept/00002.jsonl.zst"))
        for unit in units.reversed() {
            let writer = try AtomicFileWriter(path: output.removedPath(unit))
            try writer.writeLine(RemovedRecord(id: unit.name, reason: .filter("f")).jsonLine)
            try writer.finish()
        }
        try output.writeRemovedList(units: units)
        let text = try String(contentsOfFile: output.removedListPath, encoding: .utf8)
        #expect(text == "{\"id\":\"f0\",\"filter\":\"f\"}\n{\"id\":\"f1\",\"filter\":\"f\"}\n{\"id\":\"f2\",\"filter\":\"f\"}\n")
    }
}

@Suite struct JSONScannerTests {
    /// Randomly mutated JSON lines: the scanner accepts a line exactly when Foundation's parser
    /// reads it as an object (the reference), and then finds the same text.
    @Test func scannerAgreesWithFoundationOnMutatedLines() throws {
        let directory = scratchDirectory()
        let seeds = [#"{"text":"a \"b\" c","n":[1,-2.5e3,{"x":null}],"t":true,"f":false}"#,
                     #"{"id":7,"text":"line\nnext\ttab \\ slash \/ ü","o":{"a":[[]],"b":{}}}"#,
                     #"  {"text" : "" , "z" : 0.0 }  "#]
        let alphabet = Array(#"{}[]",:\ a0123-+.eEtrufalsn"#.utf8)
        var state: UInt64 = 7
        func next() -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(state >> 33)
        }
        var lines = [[UInt8]]()
        for _ in 0..<600 {
            var bytes = Array(seeds[next() % seeds.count].utf8)
            for _ in 0..<(1 + next() % 3) {
                let position = next() % bytes.count
                switch next() % 3 {
                case 0: bytes[position] = alphabet[next() % alphabet.count]
                case 1: bytes.remove(at: position)
                default: bytes.insert(alphabet[next() % alphabet.count], at: position)
                }
                if bytes.isEmpty { bytes = [0x20] }
            }
            lines.append(bytes)
        }
        var agreed = 0, accepted = 0
        for (index, line) in lines.enumerated() {
            let path = join(directory, "line\(index).jsonl")
            try write(line + [0x0A], to: path)
            let reference = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any]
            let reader = try RecordReader(unit: WorkPlan.units(inputs: [path]).units[0], options: RecordReaderOptions(onError: .skip))
            let record = try reader.next()
            // Valid objects the reader still rejects are the ones without a usable text or id field.
            let scannerIsObject = record != nil || reader.skipped.first.map { $0.reason.contains("no 'text' field") || $0.reason.contains(", not a string") } ?? false
            #expect(scannerIsObject == (reference != nil), "\(String(decoding: line, as: UTF8.self))")
            if let record, let text = reference?["text"] as? String {
                #expect(record.text == text)
                accepted += 1
            }
            if scannerIsObject == (reference != nil) { agreed += 1 }
        }
        #expect(agreed == lines.count)
        #expect(accepted > 50)
    }
}
