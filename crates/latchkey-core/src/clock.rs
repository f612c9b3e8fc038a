//! Time as an input: domain code asks a [`Clock`]; only [`SystemClock`] reads the OS.

use std::sync::{Arc, Mutex};
use time::{Duration, OffsetDateTime};

/// Where the domain gets "now". Times are truncated to microseconds, the precision PostgreSQL keeps.
pub trait Clock: Send + Sync + 'static {
    /// The current time, truncated to microseconds.
    fn now(&self) -> OffsetDateTime;
}

/// Truncate to microseconds so a value read back from either store equals the one written.
pub fn truncate_micros(t: OffsetDateTime) -> OffsetDateTime {
    let micros = t.microsecond();
    t.replace_nanosecond(micros * 1000).unwrap_or(t)
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        truncate_micros(OffsetDateTime::now_utc())
    }
}

/// A clock that only moves when told to. Shared between a test and the server it drives.
#[derive(Debug, Clone)]
pub struct FakeClock(Arc<Mutex<OffsetDateTime>>);

impl FakeClock {
    /// A fake clock starting at `start`.
    pub fn new(start: OffsetDateTime) -> Self {
        Self(Arc::new(Mutex::new(truncate_micros(start))))
    }

    /// Move the clock forward.
    pub fn advance(&self, by: Duration) {
        if let Ok(mut t) = self.0.lock() {
            *t += by;
        }
    }
}

impl Clock for FakeClock {
    fn now(&self) -> OffsetDateTime {
        self.0.lock().map(|t| *t).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// RFC 3339 text for the wire and for SQLite.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
