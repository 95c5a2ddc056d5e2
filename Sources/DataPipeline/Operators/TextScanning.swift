/// Byte-level helpers the operators share. Text is scanned as UTF-8 bytes: ASCII decisions are
/// a table lookup, and only non-ASCII bytes pay for decoding a scalar.
enum TextScanning {
    static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || (byte >= 0x09 && byte <= 0x0D)
    }

    static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

    static func isASCIILetter(_ byte: UInt8) -> Bool { (byte | 0x20) >= 0x61 && (byte | 0x20) <= 0x7A }

    static func isASCIIAlphanumeric(_ byte: UInt8) -> Bool { isDigit(byte) || isASCIILetter(byte) }

    static func isHexDigit(_ byte: UInt8) -> Bool {
        isDigit(byte) || ((byte | 0x20) >= 0x61 && (byte | 0x20) <= 0x66)
    }

    /// Decodes the scalar starting at `index` (which must be a lead byte) and its length in
    /// bytes. Malformed bytes decode as U+FFFD of length 1 (Swift strings never hold them).
    static func scalar(in bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> (Unicode.Scalar, Int) {
        let lead = bytes[index]
        if lead < 0x80 { return (Unicode.Scalar(lead), 1) }
        let length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
        guard length > 1, index + length <= bytes.count else { return ("\u{FFFD}", 1) }
        var value = UInt32(lead) & (0xFF >> UInt32(length + 1))
        for offset in 1..<length { value = (value << 6) | (UInt32(bytes[index + offset]) & 0x3F) }
        return (Unicode.Scalar(value) ?? "\u{FFFD}", length)
    }

    /// Maximal runs of non-whitespace bytes: the words of the Gopher rules (the paper splits on
    /// whitespace).
    static func words(in bytes: UnsafeBufferPointer<UInt8>) -> [Range<Int>] {
        var words = [Range<Int>]()
        var start = -1
        for index in 0..<bytes.count {
            if isWhitespace(bytes[index]) {
                if start >= 0 { words.append(start..<index); start = -1 }
            } else if start < 0 {
                start = index
            }
        }
        if start >= 0 { words.append(start..<bytes.count) }
        return words
    }

    /// The lines of the text, without their `\n` (and without a `\r` before it).
    static func lines(in bytes: UnsafeBufferPointer<UInt8>) -> [Range<Int>] {
        var lines = [Range<Int>]()
        var start = 0
        for index in 0..<bytes.count where bytes[index] == 0x0A {
            lines.append(start..<(index > start && bytes[index - 1] == 0x0D ? index - 1 : index))
            start = index + 1
        }
        if start < bytes.count { lines.append(start..<bytes.count) }
        return lines
    }

    /// `range` without leading and trailing whitespace.
    static func trimmed(_ range: Range<Int>, in bytes: UnsafeBufferPointer<UInt8>) -> Range<Int> {
        var lower = range.lowerBound, upper = range.upperBound
        while lower < upper && isWhitespace(bytes[lower]) { lower += 1 }
        while upper > lower && isWhitespace(bytes[upper - 1]) { upper -= 1 }
        return lower..<upper
    }

    /// Whether the bytes in `range` contain `needle`, ASCII case-insensitively (`needle` lower-case).
    static func contains(_ needle: [UInt8], in bytes: UnsafeBufferPointer<UInt8>, range: Range<Int>) -> Bool {
        guard let first = needle.first, range.count >= needle.count else { return false }
        var index = range.lowerBound
        let last = range.upperBound - needle.count
        while index <= last {
            if lower(bytes[index]) == first {
                var offset = 1
                while offset < needle.count && lower(bytes[index + offset]) == needle[offset] { offset += 1 }
                if offset == needle.count { return true }
            }
            index += 1
        }
        return false
    }

    static func lower(_ byte: UInt8) -> UInt8 { byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte }

    /// Number of Unicode scalars in `range` (characters, for ratios measured in characters).
    static func scalarCount(in bytes: UnsafeBufferPointer<UInt8>, range: Range<Int>) -> Int {
        var count = 0
        for index in range where bytes[index] & 0xC0 != 0x80 { count += 1 }
        return count
    }

    /// 64-bit FNV-1a of the bytes in `range`, lower-cased when `foldCase`.
    static func hash(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, foldCase: Bool = false) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for index in range {
            hash = (hash ^ UInt64(foldCase ? lower(bytes[index]) : bytes[index])) &* 0x0000_0100_0000_01B3
        }
        return hash
    }

    /// Runs `body` over the UTF-8 bytes of `text` without copying when the string is native.
    static func withBytes<Result>(_ text: String, _ body: (UnsafeBufferPointer<UInt8>) -> Result) -> Result {
        var text = text
        return text.withUTF8(body)
    }
}
