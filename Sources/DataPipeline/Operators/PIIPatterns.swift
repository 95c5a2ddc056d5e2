/// Byte-level matchers for personal data in UTF-8 text. Each returns the byte ranges it found;
/// a match is bounded by characters that cannot continue it, so `1.2.3.4.5`, `v1.2.3.4` or a
/// longer digit run never match in part.
enum PIIPatterns {
    typealias Bytes = UnsafeBufferPointer<UInt8>

    private static func isEmailLocal(_ byte: UInt8) -> Bool {
        TextScanning.isASCIIAlphanumeric(byte) || byte == 0x2E || byte == 0x5F || byte == 0x25 || byte == 0x2B || byte == 0x2D
    }

    private static func isDomain(_ byte: UInt8) -> Bool { TextScanning.isASCIIAlphanumeric(byte) || byte == 0x2E || byte == 0x2D }

    /// `local@domain.tld`: the local part of letters, digits and `._%+-`, a domain of at least
    /// two labels, a top-level label of two or more letters.
    static func emails(_ bytes: Bytes) -> [Range<Int>] {
        var found = [Range<Int>]()
        var index = 0
        var searchFrom = 0
        while index < bytes.count {
            defer { index += 1 }
            guard bytes[index] == 0x40, index > searchFrom else { continue }
            var start = index
            while start > searchFrom && isEmailLocal(bytes[start - 1]) { start -= 1 }
            while start < index && bytes[start] == 0x2E { start += 1 }
            guard start < index else { continue }
            var end = index + 1
            while end < bytes.count && isDomain(bytes[end]) { end += 1 }
            while end > index + 1 && (bytes[end - 1] == 0x2E || bytes[end - 1] == 0x2D) { end -= 1 }
            let labels = UnsafeBufferPointer(rebasing: bytes[(index + 1)..<end]).split(separator: 0x2E, omittingEmptySubsequences: false)
            guard labels.count >= 2, !labels.contains(where: { $0.isEmpty || $0.first == 0x2D }),
                  let tld = labels.last, tld.count >= 2, tld.allSatisfy(TextScanning.isASCIILetter) else { continue }
            found.append(start..<end)
            searchFrom = end
            index = end - 1
        }
        return found
    }

    /// Whether a match may start at `index`: the previous byte cannot be part of a longer token.
    private static func startsToken(_ bytes: Bytes, _ index: Int) -> Bool {
        guard index > 0 else { return true }
        let previous = bytes[index - 1]
        return !(TextScanning.isASCIIAlphanumeric(previous) || previous == 0x2E || previous == 0x2D || previous == 0x2B
                 || previous == 0x3A || previous == 0x5F || previous == 0x2F)
    }

    /// Whether a match may end at `index`: no letter, digit or `_` follows, nor a `.`/`-`/`:`
    /// that continues with a digit (`1.2.3.4.5`, `555-123-4567-89`).
    private static func endsToken(_ bytes: Bytes, _ index: Int) -> Bool {
        guard index < bytes.count else { return true }
        let next = bytes[index]
        if TextScanning.isASCIIAlphanumeric(next) || next == 0x5F { return false }
        if (next == 0x2E || next == 0x2D || next == 0x3A || next == 0x2F), index + 1 < bytes.count,
           TextScanning.isASCIIAlphanumeric(bytes[index + 1]) { return false }
        return true
    }

    /// Words that announce a version number, not an address: `SQLite 3.6.14.2`, `release 1.2.3.4`.
    private static let versionWords: Set<String> = ["version", "versions", "release", "releases", "ver", "v", "rev",
                                                    "revision", "build", "sqlite", "python", "linux", "kernel", "firmware"]

    /// Whether the word before `index` (skipping spaces) is one of `versionWords`.
    private static func followsVersionWord(_ bytes: Bytes, _ index: Int) -> Bool {
        var end = index
        while end > 0 && (bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09) { end -= 1 }
        var start = end
        while start > 0 && end - start < 12 && TextScanning.isASCIILetter(bytes[start - 1]) { start -= 1 }
        guard start < end else { return false }
        let word = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<end]).map(TextScanning.lower), as: UTF8.self)
        return versionWords.contains(word)
    }

    /// Dotted-quad IPv4 addresses with every octet in 0…255, unless a version word precedes
    /// them (a four-part version number is otherwise indistinguishable from an address).
    static func ipv4(_ bytes: Bytes) -> [Range<Int>] {
        var found = [Range<Int>]()
        var index = 0
        while index < bytes.count {
            guard TextScanning.isDigit(bytes[index]), startsToken(bytes, index) else { index += 1; continue }
            var position = index
            var octets = 0
            while octets < 4 {
                var digits = 0, value = 0
                while position < bytes.count && TextScanning.isDigit(bytes[position]) && digits < 4 {
                    value = value * 10 + Int(bytes[position] - 0x30)
                    digits += 1
                    position += 1
                }
                guard digits >= 1 && digits <= 3 && value <= 255 else { break }
                octets += 1
                if octets < 4 {
                    guard position < bytes.count && bytes[position] == 0x2E else { break }
                    position += 1
                }
            }
            if octets == 4 && endsToken(bytes, position) && !followsVersionWord(bytes, index) {
                found.append(index..<position)
                index = position
            } else {
                while index < bytes.count && TextScanning.isDigit(bytes[index]) { index += 1 }
            }
        }
        return found
    }

    /// IPv6 addresses: eight groups of 1–4 hex digits, or fewer around one `::`; at least one
    /// decimal digit (so `dead::beef`-like words and C++'s `a::b` stay).
    static func ipv6(_ bytes: Bytes) -> [Range<Int>] {
        var found = [Range<Int>]()
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            guard (TextScanning.isHexDigit(byte) || byte == 0x3A), startsToken(bytes, index) || (byte == 0x3A && index > 0
                    && !TextScanning.isASCIIAlphanumeric(bytes[index - 1]) && bytes[index - 1] != 0x3A) else { index += 1; continue }
            var end = index
            while end < bytes.count && (TextScanning.isHexDigit(bytes[end]) || bytes[end] == 0x3A) { end += 1 }
            let candidate = UnsafeBufferPointer(rebasing: bytes[index..<end])
            if end < bytes.count && (TextScanning.isASCIIAlphanumeric(bytes[end]) || bytes[end] == 0x2E) {
                index = end
                continue
            }
            if isIPv6(candidate) { found.append(index..<end) }
            index = end
        }
        return found
    }

    private static func isIPv6(_ text: Bytes) -> Bool {
        guard text.contains(where: TextScanning.isDigit) else { return false }
        var groups = 0, compressions = 0, runLength = 0, colons = 0
        var index = 0
        while index < text.count {
            if text[index] == 0x3A {
                colons += 1
                if index + 1 < text.count && text[index + 1] == 0x3A {
                    compressions += 1
                    if index + 2 < text.count && text[index + 2] == 0x3A { return false }
                    index += 1
                    colons += 1
                } else if index == 0 || index == text.count - 1 {
                    return false  // a single colon at either end
                }
                runLength = 0
            } else {
                if runLength == 0 { groups += 1 }
                runLength += 1
                if runLength > 4 { return false }
            }
            index += 1
        }
        guard colons >= 2, compressions <= 1 else { return false }
        return compressions == 1 ? groups >= 1 && groups <= 7 : groups == 8
    }

    /// Payment card numbers: 13–19 digits starting with 2–6, bare or grouped by one kind of
    /// separator (space or `-`) as 4-4-4-4(-3), 4-6-5 or 4-6-4, whose Luhn checksum is valid.
    static func cards(_ bytes: Bytes) -> [Range<Int>] {
        var found = [Range<Int>]()
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            guard TextScanning.isDigit(byte), startsToken(bytes, index) else { index += 1; continue }
            var groups = [Int]()
            var digits = [UInt8]()
            var separator: UInt8?
            var position = index
            var end = index
            while position < bytes.count {
                var length = 0
                while position < bytes.count && TextScanning.isDigit(bytes[position]) {
                    digits.append(bytes[position] - 0x30)
                    length += 1
                    position += 1
                }
                groups.append(length)
                end = position
                guard position + 1 < bytes.count, bytes[position] == 0x20 || bytes[position] == 0x2D,
                      separator == nil || separator == bytes[position], TextScanning.isDigit(bytes[position + 1]) else { break }
                separator = bytes[position]
                position += 1
            }
            if endsToken(bytes, end), isCardShape(groups), (2...6).contains(digits[0]), luhnValid(digits) {
                found.append(index..<end)
            }
            index = max(end, index + 1)
        }
        return found
    }

    private static func isCardShape(_ groups: [Int]) -> Bool {
        let total = groups.reduce(0, +)
        guard (13...19).contains(total) else { return false }
        if groups.count == 1 { return true }
        if groups == [4, 6, 5] || groups == [4, 6, 4] { return true }
        return groups.dropLast().allSatisfy { $0 == 4 } && (1...4).contains(groups.last ?? 0) && groups.count >= 4
    }

    static func luhnValid(_ digits: [UInt8]) -> Bool {
        var sum = 0
        for (offset, digit) in digits.reversed().enumerated() {
            var value = Int(digit)
            if offset % 2 == 1 { value *= 2; if value > 9 { value -= 9 } }
            sum += value
        }
        return sum % 10 == 0
    }
}
