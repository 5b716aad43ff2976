//! Where the time of one call goes, step by step: runtime setup, config parse, lock, netns
//! entry, each netlink request, the state file, IPAM delegation. Every step is recorded (a
//! clock read and a push, nothing more); `BONDNET_TIMINGS=1` prints them at exit as one JSON
//! line on stderr, and `logLevel: trace` logs each as it ends.
//!
//! One call runs on one thread, so the steps live in a thread-local: tests running side by
//! side in one process never see each other's steps.

use std::cell::RefCell;
use std::time::{Duration, Instant};

thread_local! {
    static STEPS: RefCell<Vec<(String, Duration)>> = const { RefCell::new(Vec::new()) };
}

/// Record that `step` took `took`.
pub fn record(step: impl Into<String>, took: Duration) {
    let step = step.into();
    tracing::trace!(step = %step, us = took.as_micros() as u64, "step done");
    STEPS.with(|s| s.borrow_mut().push((step, took)));
}

/// Run `f` as the step `step`.
pub fn time<T>(step: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    record(step, start.elapsed());
    out
}

/// A step that ends (and is recorded) when this guard is dropped.
#[must_use = "the step is timed until this guard is dropped"]
pub struct Step {
    name: &'static str,
    start: Instant,
}

/// Start the step `name`; it is recorded when the returned guard goes out of scope.
pub fn step(name: &'static str) -> Step {
    Step {
        name,
        start: Instant::now(),
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        record(self.name, self.start.elapsed());
    }
}

/// The steps recorded on this thread so far, in order; clears them.
pub fn take() -> Vec<(String, Duration)> {
    STEPS.with(|s| std::mem::take(&mut *s.borrow_mut()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_come_back_in_order_and_are_cleared() {
        let _ = take();
        record("a", Duration::from_micros(5));
        let v = time("b", || 7);
        assert_eq!(v, 7);
        {
            let _s = step("c");
        }
        let steps = take();
        let names: Vec<&str> = steps.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(steps[0].1, Duration::from_micros(5));
        assert!(take().is_empty());
    }
}
