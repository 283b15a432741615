//! An absolute point in time that bounds every socket operation.
//!
//! A one-shot CLI has one budget for the whole command (connect, leader
//! check, transact); passing an absolute deadline instead of per-call
//! timeouts keeps the total bounded however many round trips are made.

use std::time::{Duration, Instant};

use super::Error;

/// Below this, a socket timeout would be rounded to zero, which std rejects
/// (`set_read_timeout(Some(ZERO))` is an error), so treat it as expired.
const MIN_REMAINING: Duration = Duration::from_millis(1);

/// A wall-clock deadline (monotonic clock).
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// The deadline `d` from now.
    pub fn after(d: Duration) -> Deadline {
        let now = Instant::now();
        // An absurd duration (e.g. u64::MAX seconds) must not panic on overflow.
        let at = now.checked_add(d).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));
        Deadline { at }
    }

    /// Time left, or `Error::DeadlineExceeded` once less than 1 ms remains.
    pub fn remaining(&self) -> Result<Duration, Error> {
        let left = self.at.saturating_duration_since(Instant::now());
        if left < MIN_REMAINING {
            Err(Error::DeadlineExceeded)
        } else {
            Ok(left)
        }
    }

    /// `1/n` of the time left (at least 1 ms), never later than `self`.
    pub fn share(&self, n: u32) -> Deadline {
        let left = self.at.saturating_duration_since(Instant::now());
        let part = (left / n.max(1)).max(MIN_REMAINING);
        Deadline { at: self.at.min(Instant::now() + part) }
    }

    /// True once [`Deadline::remaining`] would fail.
    pub fn expired(&self) -> bool {
        self.remaining().is_err()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry() {
        assert!(Deadline::after(Duration::ZERO).expired());
        assert!(matches!(Deadline::after(Duration::from_micros(10)).remaining(), Err(Error::DeadlineExceeded)));
        let d = Deadline::after(Duration::from_secs(5));
        assert!(!d.expired());
        assert!(d.remaining().is_ok_and(|r| r > Duration::from_secs(4)));
        assert!(!Deadline::after(Duration::MAX).expired());
        let third = Deadline::after(Duration::from_secs(3)).share(3).remaining().unwrap();
        assert!(third <= Duration::from_secs(1) && third > Duration::from_millis(900), "{third:?}");
        let short = Deadline::after(Duration::from_millis(5));
        assert!(short.share(1).at <= short.at);
    }
}
