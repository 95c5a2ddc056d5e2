/// GPT-2's byte → character mapping, which Hugging Face `tokenizer.json` files use to write
/// byte-level tokens as text: printable Latin-1 bytes stand for themselves, the other 68 bytes
/// (controls, space, soft hyphen…) for U+0100 onward, in byte order. So the token for " the"
/// is written "Ġthe" (U+0120 stands for the space byte 0x20).
public enum ByteLevelAlphabet {
    /// The character (Unicode scalar value) standing for each byte.
    public static let characterOfByte: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for byte in 0..<256 {
            if (33...126).contains(byte) || (161...172).contains(byte) || (174...255).contains(byte) {
                table[byte] = UInt32(byte)
            } else {
                table[byte] = next
                next += 1
            }
        }
        return table
    }()

    /// The inverse: scalar value → byte, for the 256 characters of the alphabet.
    public static let byteOfCharacter: [UInt32: UInt8] = {
        var table = [UInt32: UInt8]()
        for (byte, character) in characterOfByte.enumerated() { table[character] = UInt8(byte) }
        return table
    }()

    /// The text a tokenizer.json writes for a token of `bytes`.
    public static func text(of bytes: [UInt8]) -> String {
        var scalars = String.UnicodeScalarView()
        for byte in bytes {
            if let scalar = Unicode.Scalar(characterOfByte[Int(byte)]) { scalars.append(scalar) }
        }
        return String(scalars)
    }

    /// The bytes of a tokenizer.json token text, or nil when a character is outside the alphabet.
    public static func bytes(of text: String) -> [UInt8]? {
        var result = [UInt8]()
        result.reserveCapacity(text.unicodeScalars.count)
        for scalar in text.unicodeScalars {
            guard let byte = byteOfCharacter[scalar.value] else { return nil }
            result.append(byte)
        }
        return result
    }
}
