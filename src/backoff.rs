//! One rule for how long to wait before trying again.
//!
//! Everything that retries uses [`Backoff`]: the scheduler after a failed
//! round ([`crate::scheduler::next_delay`]), hook delivery after a failed hook
//! ([`crate::hooks::retry_delay`]) and the credential cache after a failed
//! refresh ([`crate::cloud::cache::retry_delay`]). The rule is the same for
//! all; only its parameters differ:
//!
//! | caller | base | cap | jitter | floor |
//! |---|---|---|---|---|
//! | scheduler | 2 s | `sync.max_backoff` | full: `[0, ceiling]` | 1 s |
//! | hook retries | 1 s | `sync.max_backoff` (at least 1 s) | half: `[ceiling/2, ceiling]` | none |
//! | credential refresh | the failure's hold (5 s or 60 s) | 300 s (or the hold) | none | none |
//!
//! The ceiling after the `n`th failure in a row is `base × 2^(n-1)`, at most
//! `cap`; the delay is drawn below it by the jitter, from a random number the
//! caller passes in, so the rule is pure and the callers' tests can seed it.

use std::time::Duration;

/// How a delay is drawn below its ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// The ceiling itself.
    None,
    /// Uniformly between zero and the ceiling ("full jitter": many clients
    /// failing at once spread out the most).
    Full,
    /// Between half the ceiling and the ceiling.
    Half,
}

/// An exponential backoff: doubling from `base`, capped, jittered, floored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling after the first failure.
    pub base: Duration,
    /// No ceiling grows beyond this.
    pub cap: Duration,
    pub jitter: Jitter,
    /// No delay is shorter than this (applied after the jitter).
    pub floor: Duration,
}

/// Doublings beyond this change nothing any cap could want (2^30 × 1 s is
/// 34 years), and keep the shift in range.
const MAX_DOUBLINGS: u32 = 30;

impl Backoff {
    /// The longest delay after `failures` failures in a row (0 counts as 1).
    pub fn ceiling(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(MAX_DOUBLINGS);
        self.base.saturating_mul(1u32 << doublings).min(self.cap)
    }

    /// The delay after `failures` failures in a row; `r` is a random number
    /// in `[0, 1]` (clamped; NaN counts as 0).
    pub fn delay(&self, failures: u32, r: f64) -> Duration {
        let r = if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) };
        let ceiling = self.ceiling(failures);
        let drawn = match self.jitter {
            Jitter::None => ceiling,
            Jitter::Full => ceiling.mul_f64(r),
            Jitter::Half => ceiling.mul_f64(1.0 - 0.5 * r),
        };
        drawn.max(self.floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn rule(jitter: Jitter) -> Backoff {
        Backoff {
            base: S(2),
            cap: S(60),
            jitter,
            floor: S(1),
        }
    }

    #[test]
    fn the_ceiling_doubles_from_the_base_up_to_the_cap() {
        let b = rule(Jitter::None);
        let got: Vec<u64> = (0..=7).map(|n| b.ceiling(n).as_secs()).collect();
        assert_eq!(got, vec![2, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(b.ceiling(u32::MAX), S(60));
        // A cap below the base wins.
        let low = Backoff { cap: S(1), ..b };
        assert_eq!(low.ceiling(1), S(1));
        // Nothing overflows.
        let huge = Backoff {
            base: Duration::MAX,
            cap: Duration::MAX,
            ..b
        };
        assert_eq!(huge.ceiling(40), Duration::MAX);
    }

    #[test]
    fn jitter_draws_below_the_ceiling_and_the_floor_holds() {
        assert_eq!(rule(Jitter::None).delay(3, 0.3), S(8));
        assert_eq!(rule(Jitter::Full).delay(3, 0.5), S(4));
        assert_eq!(rule(Jitter::Full).delay(3, 0.0), S(1), "floored");
        assert_eq!(rule(Jitter::Half).delay(3, 1.0), S(4));
        assert_eq!(rule(Jitter::Half).delay(3, 0.0), S(8));
        // Out-of-range randomness is clamped, never a panic.
        assert_eq!(rule(Jitter::Full).delay(3, 7.0), S(8));
        assert_eq!(rule(Jitter::Full).delay(3, -1.0), S(1));
        assert_eq!(rule(Jitter::Half).delay(3, f64::NAN), S(8));
    }

    proptest::proptest! {
        #[test]
        fn a_delay_is_between_the_floor_and_the_ceiling(
            n in 0u32..100,
            r in 0.0f64..=1.0,
            base in 1u64..100,
            cap in 1u64..10_000,
        ) {
            for jitter in [Jitter::None, Jitter::Full, Jitter::Half] {
                let b = Backoff { base: S(base), cap: S(cap), jitter, floor: S(1) };
                let d = b.delay(n, r);
                proptest::prop_assert!(d >= S(1));
                proptest::prop_assert!(d <= b.ceiling(n).max(S(1)));
                proptest::prop_assert!(b.ceiling(n) <= b.ceiling(n + 1));
            }
        }
    }
}
