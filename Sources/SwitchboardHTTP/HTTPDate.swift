/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §5.6.7) for a Unix time in seconds.
///
/// Pure arithmetic, no Foundation: callers typically cache the result and refresh it once a second.
public func httpDate(unixSeconds: Int) -> String {
    // Floor division so that times before 1970 land on the right day.
    var days = unixSeconds / 86_400
    var secondOfDay = unixSeconds % 86_400
    if secondOfDay < 0 {
        secondOfDay += 86_400
        days -= 1
    }
    // 1970-01-01 was a Thursday (index 4 counting from Sunday).
    let weekday = ((days % 7) + 11) % 7
    let (year, month, day) = civilFromDays(days)

    let weekdays: [StaticString] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    let months: [StaticString] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    var out: [UInt8] = []
    out.reserveCapacity(29)
    func append(_ s: StaticString) {
        out.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }
    func twoDigits(_ n: Int) {
        out.append(UInt8(truncatingIfNeeded: 0x30 + n / 10))
        out.append(UInt8(truncatingIfNeeded: 0x30 + n % 10))
    }
    append(weekdays[weekday])
    append(", ")
    twoDigits(day)
    append(" ")
    append(months[month - 1])
    append(" ")
    if (0...9999).contains(year) {
        twoDigits(year / 100)
        twoDigits(year % 100)
    } else {
        out.append(contentsOf: String(year).utf8) // outside the format's range; still unambiguous
    }
    append(" ")
    twoDigits(secondOfDay / 3600)
    append(":")
    twoDigits(secondOfDay / 60 % 60)
    append(":")
    twoDigits(secondOfDay % 60)
    append(" GMT")
    return String(decoding: out, as: UTF8.self)
}

/// Proleptic Gregorian date for days since 1970-01-01 (Howard Hinnant's `civil_from_days`).
func civilFromDays(_ days: Int) -> (year: Int, month: Int, day: Int) {
    let z = days + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let dayOfEra = z - era * 146_097
    let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
    let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
    let mp = (5 * dayOfYear + 2) / 153
    let day = dayOfYear - (153 * mp + 2) / 5 + 1
    let month = mp < 10 ? mp + 3 : mp - 9
    return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
}
