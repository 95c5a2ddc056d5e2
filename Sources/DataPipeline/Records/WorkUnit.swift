import Foundation

/// The kinds of document input files, chosen by file name.
public enum InputFormat: Sendable, Equatable {
    case jsonl, jsonlZstd, text
    /// `.html` or `.htm`: one page = one document, its text extracted (`HTMLTextExtractor`);
    /// read only by stages that ask for it (`data clean`).
    case html

    /// The format a file name implies, or nil.
    public init?(path: String) {
        if path.hasSuffix(".jsonl.zst") {
            self = .jsonlZstd
        } else if path.hasSuffix(".jsonl") {
            self = .jsonl
        } else if path.hasSuffix(".txt") {
            self = .text
        } else if path.hasSuffix(".html") || path.hasSuffix(".htm") {
            self = .html
        } else {
            return nil
        }
    }

    var fileExtension: String {
        switch self {
        case .jsonl: return ".jsonl"
        case .jsonlZstd: return ".jsonl.zst"
        case .text: return ".txt"
        case .html: return ".html"
        }
    }

    static let expectedList = ".jsonl, .jsonl.zst or .txt"
    static let expectedListWithHTML = ".jsonl, .jsonl.zst, .txt or .html"
}

/// One input file as a unit of work: stages read, process and write it as a whole, record it in
/// the progress ledger when finished, and skip it on a rerun. Units are numbered in the order of
/// the inputs (directories expanded recursively, sorted by path), so numbers, outputs and the
/// global order of records are the same whatever the rank count.
public struct WorkUnit: Sendable, Equatable {
    /// 0-based position in the plan; output files are named after it (`00042`).
    public let index: Int
    public let path: String
    public let format: InputFormat
    /// The path below the input directory (or the file's name for a file input) without the
    /// format extension: the prefix of generated document ids.
    public let name: String
    /// File size in bytes when planned (balances ranks; progress totals).
    public let bytes: Int

    public init(index: Int, path: String, format: InputFormat, name: String, bytes: Int) {
        self.index = index
        self.path = path
        self.format = format
        self.name = name
        self.bytes = bytes
    }

    /// `00042`, the stem of this unit's output files.
    public var paddedIndex: String {
        let digits = String(index)
        return digits.count >= 5 ? digits : String(repeating: "0", count: 5 - digits.count) + digits
    }
}

/// Turns inputs into work units and deals them to ranks.
public enum WorkPlan {
    /// Expands `inputs` (files, or directories searched recursively) into numbered work units.
    /// Returns the units and how many files in the directories had other formats (not read).
    /// With `html`, `.html`/`.htm` files are inputs too (else they are of an unknown format).
    public static func units(inputs: [String], html: Bool = false) throws(DataError) -> (units: [WorkUnit], ignored: Int) {
        let expected = html ? InputFormat.expectedListWithHTML : InputFormat.expectedList
        func format(_ path: String) -> InputFormat? {
            guard let format = InputFormat(path: path), html || format != .html else { return nil }
            return format
        }
        var found = [(path: String, name: String, format: InputFormat)]()
        var ignored = 0
        let manager = FileManager.default
        for input in inputs {
            var isDirectory: ObjCBool = false
            guard manager.fileExists(atPath: input, isDirectory: &isDirectory) else {
                throw DataError("\(input): no such file or directory")
            }
            if !isDirectory.boolValue {
                guard let format = format(input) else {
                    throw DataError("\(input): unknown input format (expected \(expected))")
                }
                found.append((input, stem((input as NSString).lastPathComponent, format), format))
                continue
            }
            guard let walker = manager.enumerator(atPath: input) else { throw DataError("\(input): cannot list the directory") }
            var inDirectory = [(path: String, name: String, format: InputFormat)]()
            while let relative = walker.nextObject() as? String {
                let full = (input as NSString).appendingPathComponent(relative)
                var isSubdirectory: ObjCBool = false
                guard manager.fileExists(atPath: full, isDirectory: &isSubdirectory), !isSubdirectory.boolValue else { continue }
                if let format = format(relative) {
                    inDirectory.append((full, stem(relative, format), format))
                } else {
                    ignored += 1
                }
            }
            guard !inDirectory.isEmpty else { throw DataError("\(input): no \(expected) files in the directory") }
            found += inDirectory.sorted { $0.path < $1.path }
        }
        // Ids must be unique across units: when two inputs share a name (a.jsonl in two
        // directories), every unit is named by its full path instead.
        let names = Set(found.map(\.name))
        let useFullPaths = names.count != found.count
        var units = [WorkUnit]()
        for (index, file) in found.enumerated() {
            let size = (try? manager.attributesOfItem(atPath: file.path))?[.size] as? NSNumber
            units.append(WorkUnit(index: index, path: file.path, format: file.format,
                                  name: useFullPaths ? stem(file.path, file.format) : file.name, bytes: size?.intValue ?? 0))
        }
        return (units, ignored)
    }

    private static func stem(_ path: String, _ format: InputFormat) -> String {
        format == .html ? (path as NSString).deletingPathExtension : String(path.dropLast(format.fileExtension.count))
    }

    /// The units `rank` of `size` processes: largest first to the least-loaded rank (ties to
    /// the lower rank, then the lower unit index), so work is balanced by bytes and the choice
    /// depends only on the plan. Returned in unit order.
    public static func assignment(_ units: [WorkUnit], rank: Int, size: Int) -> [WorkUnit] {
        precondition(size > 0 && rank >= 0 && rank < size, "rank \(rank) outside 0..<\(size)")
        var load = [Int](repeating: 0, count: size)
        var owner = [Int](repeating: 0, count: units.count)
        let bySize = units.indices.sorted { units[$0].bytes != units[$1].bytes ? units[$0].bytes > units[$1].bytes : $0 < $1 }
        for unit in bySize {
            var best = 0
            for candidate in 1..<size where load[candidate] < load[best] { best = candidate }
            owner[unit] = best
            load[best] += max(units[unit].bytes, 1)
        }
        return units.indices.filter { owner[$0] == rank }.map { units[$0] }
    }
}
