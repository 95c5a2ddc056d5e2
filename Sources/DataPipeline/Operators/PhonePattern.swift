/// Phone numbers, the hardest of the PII patterns to tell from other numbers: dates, versions,
/// prices and IDs are digit groups too. Two shapes are accepted:
/// - international: `+` and a country code, then groups separated by single spaces, `-` or `.`
///   (a parenthesized group allowed), 8–15 digits in all (E.164);
/// - NANP: `NXX-NXX-XXXX` or `NXX.NXX.XXXX`, `(NXX) NXX-XXXX`, with an optional leading `1`
///   and the same separator (`1-800-555-0199`), N being 2–9.
/// Bare digit runs and space-separated triples without parentheses are not phones here.
extension PIIPatterns {
    private struct Group {
        var start: Int
        var end: Int
        var digits: Int
        var firstDigit: UInt8
        var parenthesized: Bool
        /// The separator that came before this group (nil for the first or after `)` with none).
        var separator: UInt8?
    }

    static func phones(_ bytes: Bytes) -> [Range<Int>] {
        var found = [Range<Int>]()
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            let canStart = byte == 0x2B || byte == 0x28 || TextScanning.isDigit(byte)
            guard canStart, startsPhone(bytes, index) else { index += 1; continue }
            let international = byte == 0x2B
            let groups = readGroups(bytes, from: international ? index + 1 : index)
            let match = international ? matchInternational(groups) : matchNANP(groups)
            if let count = match, endsPhone(bytes, groups[count - 1].end) {
                found.append(index..<groups[count - 1].end)
                index = groups[count - 1].end
            } else {
                index = max(groups.first?.end ?? index + 1, index + 1)
            }
        }
        return found
    }

    private static func startsPhone(_ bytes: Bytes, _ index: Int) -> Bool {
        guard index > 0 else { return true }
        let previous = bytes[index - 1]
        return !(TextScanning.isASCIIAlphanumeric(previous) || previous == 0x2E || previous == 0x2D || previous == 0x2B
                 || previous == 0x2F || previous == 0x3A || previous == 0x5F || previous == 0x24 || previous == 0x23)
    }

    private static func endsPhone(_ bytes: Bytes, _ index: Int) -> Bool {
        guard index < bytes.count else { return true }
        let next = bytes[index]
        if TextScanning.isASCIIAlphanumeric(next) || next == 0x5F || next == 0x2F { return false }
        if (next == 0x2E || next == 0x2D || next == 0x3A), index + 1 < bytes.count, TextScanning.isDigit(bytes[index + 1]) { return false }
        return true
    }

    /// Digit groups from `start`: `123`, `(123)`, separated by one of space, `-`, `.` (or nothing
    /// after a `)`), at most 8 groups.
    private static func readGroups(_ bytes: Bytes, from start: Int) -> [Group] {
        var groups = [Group]()
        var position = start
        var separator: UInt8?
        while position < bytes.count && groups.count < 8 {
            let groupStart = position
            let parenthesized = bytes[position] == 0x28
            if parenthesized { position += 1 }
            let digitsStart = position
            while position < bytes.count && TextScanning.isDigit(bytes[position]) && position - digitsStart < 5 { position += 1 }
            let digits = position - digitsStart
            guard digits > 0 else { break }
            if parenthesized {
                guard position < bytes.count && bytes[position] == 0x29 else { break }
                position += 1
            }
            groups.append(Group(start: groupStart, end: position, digits: digits, firstDigit: bytes[digitsStart] - 0x30,
                                parenthesized: parenthesized, separator: separator))
            guard position < bytes.count else { break }
            let next = bytes[position]
            if next == 0x20 || next == 0x2D || next == 0x2E {
                guard position + 1 < bytes.count, TextScanning.isDigit(bytes[position + 1]) || bytes[position + 1] == 0x28 else { break }
                separator = next
                position += 1
            } else if parenthesized && TextScanning.isDigit(next) {
                separator = nil
            } else {
                break
            }
        }
        return groups
    }

    /// The number of groups forming an international number (longest valid prefix), or nil.
    private static func matchInternational(_ groups: [Group]) -> Int? {
        guard let first = groups.first, !first.parenthesized, (1...3).contains(first.digits), first.firstDigit != 0 else { return nil }
        var best: Int?
        var total = 0
        for (offset, group) in groups.enumerated() {
            total += group.digits
            if total > 15 { break }
            if offset >= 1 && total >= 8 { best = offset + 1 }
        }
        return best
    }

    /// The number of groups forming a NANP number, or nil.
    private static func matchNANP(_ groups: [Group]) -> Int? {
        func isNumber(_ area: Group, _ exchange: Group, _ line: Group) -> Bool {
            guard area.digits == 3, exchange.digits == 3, line.digits == 4, area.firstDigit >= 2, exchange.firstDigit >= 2,
                  !exchange.parenthesized, !line.parenthesized else { return false }
            if area.parenthesized {
                return exchange.separator == nil || exchange.separator == 0x20 || exchange.separator == 0x2D
            }
            guard let separator = exchange.separator, separator != 0x20 else { return false }
            return line.separator == separator
        }
        if groups.count >= 3 && isNumber(groups[0], groups[1], groups[2]) { return 3 }
        if groups.count >= 4, groups[0].digits == 1, groups[0].firstDigit == 1, !groups[0].parenthesized,
           isNumber(groups[1], groups[2], groups[3]) || (groups[1].separator == 0x20 && groups[2].separator == 0x20 && groups[3].separator == 0x20
                                                          && groups[1].digits == 3 && groups[2].digits == 3 && groups[3].digits == 4
                                                          && groups[1].firstDigit >= 2 && groups[2].firstDigit >= 2) {
            return 4
        }
        return nil
    }
}
