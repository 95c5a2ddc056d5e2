import Foundation

/// Python's `datetime.strftime` for `strftime_now(format)`, in the C locale (English names),
/// which is what transformers' servers run with.
enum PythonTimeFormat {
    private static let weekdays = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
    private static let months = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
                                 "October", "November", "December"]

    static func format(_ date: Date, _ pattern: String, timeZone: TimeZone = .current) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: date)
        let year = parts.year ?? 1970, month = parts.month ?? 1, day = parts.day ?? 1
        let hour = parts.hour ?? 0, minute = parts.minute ?? 0, second = parts.second ?? 0
        let weekday = weekdays[((parts.weekday ?? 1) - 1) % 7]
        let monthName = months[(month - 1) % 12]
        let dayOfYear = calendar.ordinality(of: .day, in: .year, for: date) ?? 1
        func padded(_ value: Int, _ width: Int = 2) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        var result = ""
        var scalars = pattern.unicodeScalars.makeIterator()
        while let scalar = scalars.next() {
            guard scalar == "%" else { result.unicodeScalars.append(scalar); continue }
            guard let directive = scalars.next() else { result += "%"; break }
            switch directive {
            case "a": result += String(weekday.prefix(3))
            case "A": result += weekday
            case "b", "h": result += String(monthName.prefix(3))
            case "B": result += monthName
            case "d": result += padded(day)
            case "e": result += (day < 10 ? " " : "") + String(day)
            case "H": result += padded(hour)
            case "I": result += padded(hour % 12 == 0 ? 12 : hour % 12)
            case "j": result += padded(dayOfYear, 3)
            case "m": result += padded(month)
            case "M": result += padded(minute)
            case "p": result += hour < 12 ? "AM" : "PM"
            case "S": result += padded(second)
            case "y": result += padded(year % 100)
            case "Y": result += String(year)
            case "F": result += "\(year)-\(padded(month))-\(padded(day))"
            case "T": result += "\(padded(hour)):\(padded(minute)):\(padded(second))"
            case "%": result += "%"
            default:
                result += "%"
                result.unicodeScalars.append(directive)
            }
        }
        return result
    }
}
