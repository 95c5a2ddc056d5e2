import Foundation

/// The header of a `.npy` file (NumPy's format 1.0, 2.0 or 3.0): magic, version, header length,
/// then a Python dict literal `{'descr': '<u2', 'fortran_order': False, 'shape': (N,), }`.
struct NPYHeader {
    static let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)
    let type: RawTokenType
    let count: Int
    let dataOffset: Int

    /// `prefix`: the file's first 12 bytes (or fewer); `readMore(n)`: the next n bytes.
    init(path: String, prefix: [UInt8], readMore: (Int) throws(DataError) -> [UInt8]) throws(DataError) {
        guard prefix.count >= 10, Array(prefix[0..<6]) == Self.magic else {
            throw DataError("\(path): not a .npy file (it does not start with \\x93NUMPY)")
        }
        let major = prefix[6]
        let headerLength: Int
        var headerStart: Int
        switch major {
        case 1:
            headerLength = Int(prefix[8]) | Int(prefix[9]) << 8
            headerStart = 10
        case 2, 3:
            guard prefix.count >= 12 else { throw DataError("\(path): .npy header is truncated") }
            headerLength = Int(prefix[8]) | Int(prefix[9]) << 8 | Int(prefix[10]) << 16 | Int(prefix[11]) << 24
            headerStart = 12
        default:
            throw DataError("\(path): .npy format version \(major).\(prefix[7]) is not supported (1.0, 2.0 and 3.0 are)")
        }
        var headerBytes = Array(prefix[min(headerStart, prefix.count)...])
        if headerBytes.count < headerLength { headerBytes += try readMore(headerLength - headerBytes.count) }
        headerBytes = Array(headerBytes.prefix(headerLength))
        dataOffset = headerStart + headerLength
        let header = String(decoding: headerBytes, as: UTF8.self)

        guard let descr = Self.value(of: "descr", in: header) else { throw DataError("\(path): .npy header has no 'descr'") }
        let descrText = descr.trimmingCharacters(in: CharacterSet(charactersIn: "'\""))
        guard let type = RawTokenType.allCases.first(where: { $0.numpyDescr == descrText }) else {
            throw DataError("\(path): .npy dtype '\(descrText)' is not a token id type (use '<u2', '<i4', '<u4' or '<i8')")
        }
        guard let fortran = Self.value(of: "fortran_order", in: header) else {
            throw DataError("\(path): .npy header has no 'fortran_order'")
        }
        guard fortran == "False" else {
            throw DataError("\(path): .npy array is in Fortran order; token ids must be a 1-D C-order array")
        }
        guard let shape = Self.value(of: "shape", in: header) else { throw DataError("\(path): .npy header has no 'shape'") }
        let dimensions = shape.trimmingCharacters(in: CharacterSet(charactersIn: "()")).split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard dimensions.count == 1, let count = Int(dimensions[0]) else {
            throw DataError("\(path): .npy array has shape \(shape); token ids must be a 1-D array")
        }
        self.type = type
        self.count = count
    }

    /// The literal after `'key':` up to the next top-level `,` or `}` (a tuple kept whole).
    private static func value(of key: String, in header: String) -> String? {
        guard let keyRange = header.range(of: "'\(key)'") ?? header.range(of: "\"\(key)\"") else { return nil }
        var rest = header[keyRange.upperBound...].drop { $0 == " " }
        guard rest.first == ":" else { return nil }
        rest = rest.dropFirst().drop { $0 == " " }
        var depth = 0
        var end = rest.startIndex
        while end < rest.endIndex {
            let character = rest[end]
            if character == "(" { depth += 1 }
            if character == ")" { depth -= 1; if depth == 0 { end = rest.index(after: end); break } }
            if depth == 0 && (character == "," || character == "}") { break }
            end = rest.index(after: end)
        }
        return String(rest[rest.startIndex..<end]).trimmingCharacters(in: .whitespaces)
    }
}
