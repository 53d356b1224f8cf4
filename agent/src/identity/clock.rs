//! Wall-clock helpers: whole seconds since the epoch (what certificates carry) and an
//! RFC 3339 rendering for logs and CLI output.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::time::ASN1Time;

/// Seconds since the Unix epoch, rounded down; 0 for times before it.
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The time `secs` seconds after the Unix epoch.
pub(crate) fn from_unix(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// A certificate time (what rcgen's `CertificateParams` takes) for `secs` since the epoch.
pub(crate) fn asn1_time(secs: u64) -> Result<ASN1Time, String> {
    let secs = i64::try_from(secs).map_err(|_| format!("time {secs} is out of range"))?;
    ASN1Time::from_timestamp(secs).map_err(|e| format!("time {secs} is out of range: {e}"))
}

/// A certificate time as a `SystemTime` (times before the epoch become the epoch).
pub(crate) fn from_asn1(t: &ASN1Time) -> SystemTime {
    from_unix(u64::try_from(t.timestamp()).unwrap_or(0))
}

/// `2025-06-01T12:00:00Z`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let secs = unix_secs(t);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`, restricted to non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(from_unix(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(from_unix(1_767_225_599)), "2025-12-31T23:59:59Z");
    }

    #[test]
    fn asn1_round_trip() {
        let t = asn1_time(1_700_000_000).unwrap();
        assert_eq!(unix_secs(from_asn1(&t)), 1_700_000_000);
    }
}
