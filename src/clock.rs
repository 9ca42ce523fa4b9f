//! Where the layer and the lifecycle facade get the time, so that expiry is testable to
//! the second.

use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::{SystemTime, UNIX_EPOCH},
};

use time::{Duration, OffsetDateTime};

/// A source of the current time.
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// Now, in UTC.
    fn now(&self) -> OffsetDateTime;

    /// Now, in nanoseconds since the Unix epoch: what the layer reads on every request.
    /// The default converts [`now`](Self::now); [`SystemClock`] reads the system time
    /// directly, skipping the calendar arithmetic.
    fn unix_nanos(&self) -> i128 {
        self.now().unix_timestamp_nanos()
    }
}

/// The system's clock: the default.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn unix_nanos(&self) -> i128 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since) => i128::try_from(since.as_nanos()).unwrap_or(i128::MAX),
            Err(before) => -i128::try_from(before.duration().as_nanos()).unwrap_or(i128::MAX),
        }
    }
}

/// A clock that stands still until told to move: for tests of expiry. Clones share the
/// same time.
///
/// ```
/// use tower_pat::clock::{Clock, ManualClock};
/// use time::{Duration, macros::datetime};
///
/// let clock = ManualClock::new(datetime!(2026-01-01 00:00 UTC));
/// clock.advance(Duration::seconds(5));
/// assert_eq!(clock.now(), datetime!(2026-01-01 00:00:05 UTC));
/// ```
#[derive(Clone)]
pub struct ManualClock(Arc<Mutex<OffsetDateTime>>);

impl ManualClock {
    /// A clock showing `at`.
    pub fn new(at: OffsetDateTime) -> Self {
        Self(Arc::new(Mutex::new(at)))
    }

    /// Sets the time.
    pub fn set(&self, at: OffsetDateTime) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }

    /// Moves the time by `by` (which may be negative).
    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *t += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ManualClock").field(&self.now()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_fast_path_agrees_with_now() {
        let clock = SystemClock;
        let before = clock.now().unix_timestamp_nanos();
        let fast = clock.unix_nanos();
        let after = clock.now().unix_timestamp_nanos();
        assert!(before <= fast && fast <= after, "{before} {fast} {after}");
    }
}
