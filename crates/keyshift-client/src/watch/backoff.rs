//! Reconnect delays: exponential from a minimum to a maximum, with "equal
//! jitter" (each delay is drawn between half the exponential step and the
//! full step, and never below the minimum), so consumers that lost the
//! server together do not come back together.

use std::time::Duration;

use rand::Rng;

/// The delay schedule of one reconnecting loop. Randomness comes in as `R`,
/// so tests seed it.
#[derive(Debug)]
pub(crate) struct Backoff<R> {
    min: Duration,
    max: Duration,
    attempt: u32,
    rng: R,
}

impl<R: Rng> Backoff<R> {
    /// A schedule from `min` to `max` (the caller checked `0 < min <= max`).
    pub(crate) fn new(min: Duration, max: Duration, rng: R) -> Self {
        Backoff {
            min,
            max,
            attempt: 0,
            rng,
        }
    }

    /// The exponential step of attempt `n` without jitter: `min * 2^n`,
    /// at most `max`.
    pub(crate) fn step(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// The delay before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.step(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        let step_ns = u64::try_from(step.as_nanos()).unwrap_or(u64::MAX);
        let half = step_ns / 2;
        let jittered = Duration::from_nanos(step_ns - self.rng.gen_range(0..=half));
        jittered.max(self.min)
    }

    /// Back to the first step (after a connection succeeded).
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    fn schedule(seed: u64, n: usize) -> Vec<Duration> {
        let mut b = Backoff::new(
            Duration::from_secs(2),
            Duration::from_secs(60),
            StdRng::seed_from_u64(seed),
        );
        (0..n).map(|_| b.next_delay()).collect()
    }

    #[test]
    fn delays_grow_exponentially_within_the_jitter_band_up_to_the_maximum() {
        let seed = 7;
        let delays = schedule(seed, 12);
        let steps = [2, 4, 8, 16, 32, 60, 60, 60, 60, 60, 60, 60];
        for (i, (d, step)) in delays.iter().zip(steps).enumerate() {
            let step = Duration::from_secs(step);
            let low = (step / 2).max(Duration::from_secs(2));
            assert!(
                *d >= low && *d <= step,
                "seed {seed} attempt {i}: {d:?} outside [{low:?}, {step:?}]"
            );
        }
        // Jitter: the capped delays are not all the same.
        assert!(delays[6..].windows(2).any(|w| w[0] != w[1]), "{delays:?}");
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        assert_eq!(schedule(42, 10), schedule(42, 10));
        assert_ne!(schedule(42, 10), schedule(43, 10));
    }

    #[test]
    fn reset_starts_over_from_the_minimum() {
        let min = Duration::from_millis(50);
        let mut b = Backoff::new(min, Duration::from_millis(500), StdRng::seed_from_u64(1));
        for _ in 0..10 {
            b.next_delay();
        }
        assert_eq!(b.step(b.attempt), Duration::from_millis(500));
        b.reset();
        let first = b.next_delay();
        assert_eq!(
            first, min,
            "the first step is the minimum: jitter cannot go below it"
        );
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::new(
            Duration::from_secs(2),
            Duration::from_secs(60),
            StdRng::seed_from_u64(3),
        );
        b.attempt = u32::MAX;
        assert!(b.next_delay() <= Duration::from_secs(60));
        assert_eq!(b.step(1000), Duration::from_secs(60));
    }
}
