/// Splits text into words and hashes its word n-grams (shingles), with a byte scanner rather
/// than a tokenizer library: a word is a maximal run of Unicode letters, marks and digits.
/// Words are normalized as they are scanned — letters lowercased, every digit replaced by `0`
/// (as datatrove's MinHash normalization does) — so "Chapter 12" and "chapter 13" share words.
/// Punctuation and whitespace only separate words.
struct ShingleHasher {
    let ngramSize: Int
    private var wordHashes = [UInt64]()
    private var shingleBuffer = [UInt64]()
    /// Per ASCII byte: 0 separator, else the normalized byte (lowercase letter or `0`).
    private static let asciiClass: [UInt8] = (0..<128).map { byte in
        switch UInt8(byte) {
        case UInt8(ascii: "a")...UInt8(ascii: "z"): return UInt8(byte)
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): return UInt8(byte) + 32
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt8(ascii: "0")
        default: return 0
        }
    }

    init(ngramSize: Int) {
        self.ngramSize = ngramSize
    }

    private static let fnvPrime: UInt64 = 0x0000_0100_0000_01B3
    private static let fnvBasis: UInt64 = 0xCBF2_9CE4_8422_2325

    /// Whether a non-ASCII scalar belongs to words.
    private static func isWordScalar(_ scalar: Unicode.Scalar) -> Bool {
        let properties = scalar.properties
        if properties.isAlphabetic { return true }
        switch properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    /// The hashes of the words of `text`, in order (reused buffer; valid until the next call).
    mutating func words(_ text: inout String) -> [UInt64] {
        // A text of n bytes has at most n/2 + 1 words: size the buffer once and write through a
        // pointer (appending word by word costs a uniqueness check each time).
        let capacity = text.utf8.count / 2 + 1
        if wordHashes.count < capacity { wordHashes = [UInt64](repeating: 0, count: capacity) }
        var wordCount = 0
        wordHashes.withUnsafeMutableBufferPointer { output in
            text.withUTF8 { bytes in
                let table = Self.asciiClass
                var hash = Self.fnvBasis
                var inWord = false
                var index = 0
                let count = bytes.count
                while index < count {
                    let byte = bytes[index]
                    if byte < 0x80 {
                        let normalized = table[Int(byte)]
                        if normalized != 0 {
                            hash = (hash ^ UInt64(normalized)) &* Self.fnvPrime
                            inWord = true
                        } else if inWord {
                            output[wordCount] = TextHashing.mix(hash)
                            wordCount += 1
                            hash = Self.fnvBasis
                            inWord = false
                        }
                        index += 1
                        continue
                    }
                    // A multi-byte scalar (input is valid UTF-8: the readers checked it).
                    let length = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : 2
                    var value = UInt32(byte) & (length == 2 ? 0x1F : length == 3 ? 0x0F : 0x07)
                    for offset in 1..<length where index + offset < count {
                        value = value << 6 | UInt32(bytes[index + offset] & 0x3F)
                    }
                    let scalar = Unicode.Scalar(value) ?? "\u{FFFD}"
                    if Self.isWordScalar(scalar) {
                        let properties = scalar.properties
                        if properties.numericType != nil && properties.generalCategory == .decimalNumber {
                            hash = (hash ^ UInt64(UInt8(ascii: "0"))) &* Self.fnvPrime
                        } else if properties.changesWhenLowercased {
                            for unit in properties.lowercaseMapping.utf8 { hash = (hash ^ UInt64(unit)) &* Self.fnvPrime }
                        } else {
                            for offset in 0..<length where index + offset < count {
                                hash = (hash ^ UInt64(bytes[index + offset])) &* Self.fnvPrime
                            }
                        }
                        inWord = true
                    } else if inWord {
                        output[wordCount] = TextHashing.mix(hash)
                        wordCount += 1
                        hash = Self.fnvBasis
                        inWord = false
                    }
                    index += length
                }
                if inWord {
                    output[wordCount] = TextHashing.mix(hash)
                    wordCount += 1
                }
            }
        }
        return Array(wordHashes[..<wordCount])
    }

    /// Calls `body` with the hashes of every word n-gram of `text`, in order (duplicates kept).
    /// A text with fewer words than `ngramSize` (but at least one) has one shingle of all its
    /// words; a text without words has none.
    mutating func withShingles<Result>(_ text: inout String, _ body: (UnsafeBufferPointer<UInt64>) -> Result) -> Result {
        let words = words(&text)
        let width = min(ngramSize, words.count)
        let count = words.isEmpty ? 0 : words.count - width + 1
        if shingleBuffer.count < count { shingleBuffer = [UInt64](repeating: 0, count: max(count, 2 * shingleBuffer.count)) }
        return words.withUnsafeBufferPointer { hashes in
            shingleBuffer.withUnsafeMutableBufferPointer { shingles in
                for start in 0..<count {
                    var hash: UInt64 = 0x9E37_79B9_7F4A_7C15 &* UInt64(width)
                    for offset in 0..<width {
                        hash = (hash ^ hashes[start + offset]) &* 0xD6E8_FEB8_6659_FD93
                        hash = hash << 31 | hash >> 33
                    }
                    shingles[start] = TextHashing.mix(hash)
                }
                return body(UnsafeBufferPointer(rebasing: shingles[0..<count]))
            }
        }
    }

    /// The sorted, distinct shingle hashes of `text` (for exact Jaccard verification).
    mutating func shingleSet(_ text: inout String) -> [UInt64] {
        var shingles = withShingles(&text) { Array($0) }
        shingles.sort()
        var unique = [UInt64]()
        unique.reserveCapacity(shingles.count)
        for value in shingles where unique.last != value { unique.append(value) }
        return unique
    }
}
