//! UTC civil time without a date crate: the log needs only "which UTC day is this" and
//! an RFC 3339 timestamp with microseconds, both a few lines of integer arithmetic
//! (Howard Hinnant's `days_from_civil` / `civil_from_days`), so no dependency is added.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Where the failure log gets the time: the system clock, or a test's clock.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A UTC instant in microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Micros(pub i64);

impl Micros {
    pub fn from_system(t: SystemTime) -> Micros {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Micros(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            Err(e) => Micros(-i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX)),
        }
    }

    pub fn day(self) -> Day {
        Day(self.0.div_euclid(MICROS_PER_DAY))
    }

    pub fn minus(self, d: Duration) -> Micros {
        Micros(
            self.0
                .saturating_sub(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        )
    }

    /// The start of this instant's UTC hour.
    pub fn hour_start(self) -> Micros {
        const HOUR: i64 = 3_600_000_000;
        Micros(self.0.div_euclid(HOUR) * HOUR)
    }

    /// `2026-05-01T12:34:56.123456Z`.
    pub fn rfc3339(self) -> String {
        match self.rfc3339_ascii() {
            Some(ascii) => ascii.iter().map(|&b| char::from(b)).collect(),
            None => self.rfc3339_formatted(),
        }
    }

    /// `rfc3339` on the stack, for years 0–9999 (every record written carries one):
    /// digits written right to left into a fixed template, division by a constant 10
    /// being a multiply. `None` for other years.
    pub fn rfc3339_ascii(self) -> Option<[u8; 27]> {
        let (date, rem) = (self.day(), self.0.rem_euclid(MICROS_PER_DAY));
        let secs = rem / 1_000_000;
        let (y, m, d) = date.civil();
        if !(0..=9999).contains(&y) {
            return None;
        }
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        let fields = [
            (0..4, y),
            (5..7, i64::from(m)),
            (8..10, i64::from(d)),
            (11..13, secs / 3600),
            (14..16, secs / 60 % 60),
            (17..19, secs % 60),
            (20..26, rem % 1_000_000),
        ];
        for (at, value) in fields {
            put_digits(&mut out[at], value);
        }
        Some(out)
    }

    /// `rfc3339` through the formatter, for any year.
    fn rfc3339_formatted(self) -> String {
        let (date, rem) = (self.day(), self.0.rem_euclid(MICROS_PER_DAY));
        let secs = rem / 1_000_000;
        format!(
            "{date}T{:02}:{:02}:{:02}.{:06}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            rem % 1_000_000
        )
    }

    /// Reads `YYYY-MM-DDTHH:MM:SS[.frac](Z|+00:00)`; other offsets are converted.
    pub fn parse_rfc3339(s: &str) -> Option<Micros> {
        let (date, time) = s.split_once(['T', 't', ' '])?;
        let day = Day::parse(date)?;
        let (clock, offset_micros) = split_offset(time)?;
        let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
        let mut parts = hms.split(':').map(|p| p.parse::<i64>().ok());
        let (h, m, sec) = (parts.next()??, parts.next()??, parts.next()??);
        if parts.next().is_some() || h > 23 || m > 59 || sec > 60 {
            return None;
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let frac_micros = format!("{frac:0<6}")[..6].parse::<i64>().ok()?;
        let micros = day.0 * MICROS_PER_DAY + (h * 3600 + m * 60 + sec) * 1_000_000 + frac_micros;
        Some(Micros(micros - offset_micros))
    }
}

/// `value` (0 ≤ value < 10^len) as exactly `slot.len()` decimal digits.
fn put_digits(slot: &mut [u8], value: i64) {
    let mut value = value.unsigned_abs();
    for digit in slot.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

fn split_offset(time: &str) -> Option<(&str, i64)> {
    if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        return Some((clock, 0));
    }
    let at = time.rfind(['+', '-'])?;
    let (clock, offset) = time.split_at(at);
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let (h, m) = offset[1..].split_once(':')?;
    let minutes = h.parse::<i64>().ok()? * 60 + m.parse::<i64>().ok()?;
    Some((clock, sign * minutes * 60_000_000))
}

/// A UTC calendar day, as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub i64);

impl Day {
    pub fn from_civil(y: i64, m: u32, d: u32) -> Day {
        Day(days_from_civil(y, m, d))
    }

    pub fn civil(self) -> (i64, u32, u32) {
        civil_from_days(self.0)
    }

    pub fn start(self) -> Micros {
        Micros(self.0 * MICROS_PER_DAY)
    }

    /// Reads `YYYY-MM-DD`, refusing dates that do not exist (2026-02-30).
    pub fn parse(s: &str) -> Option<Day> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let digits = |r: std::ops::Range<usize>| -> Option<i64> {
            let part = s.get(r)?;
            part.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| part.parse().ok())?
        };
        let (y, m, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
        let (m, d) = (u32::try_from(m).ok()?, u32::try_from(d).ok()?);
        if !(1..=12).contains(&m) || d == 0 {
            return None;
        }
        let day = Day::from_civil(y, m, d);
        (day.civil() == (y, m, d)).then_some(day)
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.civil();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let mp = (i64::from(m) + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (Hinnant).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates_round_trip() {
        let cases = [
            ((1970, 1, 1), 0),
            ((1969, 12, 31), -1),
            ((2000, 2, 29), 11_016),
            ((2000, 3, 1), 11_017),
            ((2024, 12, 31), 20_088),
            ((2026, 1, 1), 20_454),
        ];
        for ((y, m, d), days) in cases {
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
            assert_eq!(civil_from_days(days), (y, m, d));
        }
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        for z in days_from_civil(1900, 1, 1)..days_from_civil(2300, 1, 1) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d));
        }
    }

    #[test]
    fn rfc3339_digit_by_digit_is_what_the_formatter_writes() {
        let step = 133_337 * 1_000_000 + 123_457; // ~37 h: every hour, minute and day
        let (from, to) = (Day::from_civil(1900, 1, 1), Day::from_civil(2300, 1, 1));
        let mut t = from.start().0;
        while t < to.start().0 {
            assert_eq!(Micros(t).rfc3339(), Micros(t).rfc3339_formatted());
            t += step;
        }
        let far = Day::from_civil(12_000, 1, 1).start();
        assert_eq!(far.rfc3339(), "12000-01-01T00:00:00.000000Z");
    }

    #[test]
    fn formats_rfc3339_with_micros_in_utc() {
        // 2026-03-04T05:06:07.000089Z
        let t = Day::from_civil(2026, 3, 4).start().0 + (5 * 3600 + 6 * 60 + 7) * 1_000_000 + 89;
        assert_eq!(Micros(t).rfc3339(), "2026-03-04T05:06:07.000089Z");
        assert_eq!(
            Micros::parse_rfc3339("2026-03-04T05:06:07.000089Z"),
            Some(Micros(t))
        );
        assert_eq!(
            Micros::parse_rfc3339("2026-03-04T07:06:07.000089+02:00"),
            Some(Micros(t))
        );
        assert_eq!(Micros(-1).rfc3339(), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn parses_only_real_dates() {
        assert_eq!(
            Day::parse("2026-02-28").map(|d| d.to_string()).as_deref(),
            Some("2026-02-28")
        );
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "2026-1-01",
            "26-01-01",
            "2026-01-0x",
            "",
            "2026-00-10",
        ] {
            assert_eq!(Day::parse(bad), None, "{bad}");
        }
        assert_eq!(Micros::parse_rfc3339("not a time"), None);
    }
}
