/// Python `str` operations on Unicode scalars (Python strings are sequences of code points;
/// Swift's `Character` would merge "\r\n" and combining marks and give different lengths).
enum TemplateStrings {
    static func scalars(_ text: String) -> [Unicode.Scalar] { Array(text.unicodeScalars) }

    static func string<Scalars: Sequence>(_ scalars: Scalars) -> String where Scalars.Element == Unicode.Scalar {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        return String(view)
    }

    /// Python's `str.isspace` for one scalar.
    static func isSpace(_ scalar: Unicode.Scalar) -> Bool {
        scalar.properties.isWhitespace || (0x1C...0x1F).contains(scalar.value)
    }

    /// The scalar offset of the first `needle` in `haystack` at or after `start`.
    static func find(_ needle: String, in haystack: String, from start: Int = 0) -> Int? {
        find(scalars(needle), in: scalars(haystack), from: start)
    }

    static func find(_ needle: [Unicode.Scalar], in haystack: [Unicode.Scalar], from start: Int = 0) -> Int? {
        guard needle.count <= haystack.count else { return nil }
        if needle.isEmpty { return min(start, haystack.count) }
        var position = start
        while position + needle.count <= haystack.count {
            if haystack[position] == needle[0] && haystack[position..<position + needle.count].elementsEqual(needle) { return position }
            position += 1
        }
        return nil
    }

    /// `str.strip(characters)`; nil characters strips whitespace.
    static func strip(_ text: String, characters: String?, leading: Bool, trailing: Bool) -> String {
        let set = characters.map { Set($0.unicodeScalars) }
        let shouldStrip: (Unicode.Scalar) -> Bool = { scalar in set?.contains(scalar) ?? isSpace(scalar) }
        var items = scalars(text)[...]
        if leading { while let first = items.first, shouldStrip(first) { items.removeFirst() } }
        if trailing { while let last = items.last, shouldStrip(last) { items.removeLast() } }
        return string(items)
    }

    /// `str.split(separator, maxsplit)`; a nil separator splits on runs of whitespace and drops
    /// empty pieces, as Python does.
    static func split(_ text: String, separator: String?, maximumSplits: Int, fromRight: Bool) throws -> [String] {
        let items = scalars(text)
        let limit = maximumSplits < 0 ? Int.max : maximumSplits
        guard let separator else {
            // Runs of whitespace separate words; after the last allowed split the rest is one
            // word, with only its near end's whitespace removed.
            let ordered = fromRight ? Array(items.reversed()) : items
            var words: [[Unicode.Scalar]] = []
            var index = 0
            while true {
                while index < ordered.count && isSpace(ordered[index]) { index += 1 }
                if index == ordered.count { break }
                if words.count == limit {
                    words.append(Array(ordered[index...]))
                    break
                }
                var end = index
                while end < ordered.count && !isSpace(ordered[end]) { end += 1 }
                words.append(Array(ordered[index..<end]))
                index = end
            }
            return fromRight ? words.reversed().map { string($0.reversed()) } : words.map { string($0) }
        }
        let needle = scalars(separator)
        guard !needle.isEmpty else { throw ChatTemplateError(.render, "empty separator") }
        if fromRight {
            let reversedPieces = try split(string(items.reversed()), separator: string(needle.reversed()), maximumSplits: maximumSplits, fromRight: false)
            return reversedPieces.reversed().map { string($0.unicodeScalars.reversed()) }
        }
        var pieces: [String] = []
        var start = 0
        while pieces.count < limit, let found = find(needle, in: items, from: start) {
            pieces.append(string(items[start..<found]))
            start = found + needle.count
        }
        pieces.append(string(items[start...]))
        return pieces
    }

    /// `str.replace(old, new, count)`.
    static func replace(_ text: String, _ old: String, _ new: String, count: Int) -> String {
        let items = scalars(text)
        let needle = scalars(old)
        let limit = count < 0 ? Int.max : count
        var result: [Unicode.Scalar] = []
        var start = 0
        var replaced = 0
        if needle.isEmpty {
            // Python inserts the replacement between every character and at both ends.
            for scalar in items {
                if replaced < limit { result.append(contentsOf: new.unicodeScalars); replaced += 1 }
                result.append(scalar)
            }
            if replaced < limit { result.append(contentsOf: new.unicodeScalars) }
            return string(result)
        }
        while replaced < limit, let found = find(needle, in: items, from: start) {
            result.append(contentsOf: items[start..<found])
            result.append(contentsOf: new.unicodeScalars)
            start = found + needle.count
            replaced += 1
        }
        result.append(contentsOf: items[start...])
        return string(result)
    }

    /// jinja2's `title` filter: each word (split at whitespace, `-`, `(`, `{`, `[`, `<`)
    /// gets an upper-case first letter and lower-case rest.
    static func title(_ text: String) -> String {
        var result = ""
        var atWordStart = true
        for scalar in text.unicodeScalars {
            let isBoundary = isSpace(scalar) || "-({[<".unicodeScalars.contains(scalar)
            if isBoundary {
                result.unicodeScalars.append(scalar)
                atWordStart = true
            } else {
                result += atWordStart ? String(scalar).uppercased() : String(scalar).lowercased()
                atWordStart = false
            }
        }
        return result
    }

    /// Python's `str.capitalize`: first character upper case, the rest lower case.
    static func capitalize(_ text: String) -> String {
        guard let first = text.unicodeScalars.first else { return text }
        return String(first).uppercased() + string(text.unicodeScalars.dropFirst()).lowercased()
    }

    /// Python's `str.splitlines()`: breaks at every line boundary Python knows, no empty last line.
    static func splitLines(_ text: String) -> [String] {
        let boundaries: Set<UInt32> = [0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029]
        var lines: [String] = []
        var current = String.UnicodeScalarView()
        var previousWasReturn = false
        for scalar in text.unicodeScalars {
            if scalar == "\n" && previousWasReturn { previousWasReturn = false; continue }
            previousWasReturn = scalar == "\r"
            if boundaries.contains(scalar.value) {
                lines.append(String(current))
                current = String.UnicodeScalarView()
            } else {
                current.append(scalar)
            }
        }
        if !current.isEmpty { lines.append(String(current)) }
        return lines
    }
}
