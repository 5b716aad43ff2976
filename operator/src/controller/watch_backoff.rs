//! How long a failing watch waits before it tries again. kube-runtime's default doubles from
//! 0.8 s to 30 s with up to as much again of jitter, and only an event resets it: while the API
//! server is down every watch climbs to that cap, and after it returns, the first resume from
//! the old resource version fails with 410 Gone (the new server's watch cache starts after it),
//! which costs one more full wait before the re-list. A change made just after a restart could
//! then wait a minute or more. One controller's few watches do not need that much spreading,
//! so they back off from 0.5 s doubling to 5 s.

use std::time::Duration;

use kube::runtime::utils::Backoff;

/// The first wait after a success.
pub const FIRST: Duration = Duration::from_millis(500);
/// The longest wait.
pub const MAX: Duration = Duration::from_secs(5);

/// Doubles from [`FIRST`] to [`MAX`]; reset by any watch event (kube-runtime's
/// `StreamBackoff` resets it on every `Ok`).
#[derive(Debug, Clone)]
pub struct WatchBackoff {
    next: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let wait = self.next;
        self.next = wait.saturating_mul(2).min(MAX);
        Some(wait)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_half_a_second_to_5_seconds_and_reset_to_the_first() {
        let mut backoff = WatchBackoff::default();
        let waits: Vec<u64> = backoff
            .by_ref()
            .take(6)
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 5000, 5000]);
        backoff.reset();
        assert_eq!(backoff.next(), Some(FIRST));
    }
}
