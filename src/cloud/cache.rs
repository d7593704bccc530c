//! One single-flight cache for credentials that expire: an IAM token per
//! project ([`super::iam`]) and the metadata service's temporary keys
//! ([`super::metadata`]).
//!
//! A value is served until its refresh time. From then on the first caller
//! fetches a new one while the others wait for it (single flight: one async
//! lock, held across the fetch). If that refresh fails while the value is
//! still valid (before its hard expiry), the value keeps being served and the
//! refresh is retried with backoff ([`retry_delay`]), so a brief outage of
//! IAM or of the metadata service costs no round. Only without a valid value
//! is the failure returned, and then it is shared for its hold time with the
//! callers that waited for it, so a wrong password is tried once, not once
//! per instance.
//!
//! Times are on tokio's clock (monotonic; paused in tests): an expiry given as
//! a wall-clock time becomes a deadline when the value is stored, and the
//! wall clock is asked again at each use, the earlier answer winning (the
//! monotonic clock stands still while a machine is suspended). The decision
//! ([`decide`]) is pure.
//!
//! Each value stored gets the next [`Generation`] of its cache, handed out
//! with it: a caller whose credential was refused passes it back to
//! [`Cache::invalidate`], which drops that value only if it is still the one
//! stored. The cache is the only keeper of generations.
//!
//! The values most recently stored can be read without waiting for a fetch in
//! flight ([`Cache::recent`]): the scrubber needs them to take echoed
//! credentials out of error texts.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::credential::AuthError;
use crate::backoff::{Backoff, Jitter};

/// The longest wait between two refresh attempts while a value is still
/// valid.
pub const MAX_RETRY: Duration = Duration::from_secs(300);

/// A credential with a refresh time and a hard expiry.
pub trait Expiring: Clone {
    /// When to start fetching a replacement.
    fn refresh_at(&self) -> SystemTime;
    /// When it stops working.
    fn expires_at(&self) -> SystemTime;
}

/// Which stored value a caller got: successive values of one cache have
/// successive generations, so a refusal (HTTP 401) drops exactly the value
/// refused ([`Cache::invalidate`]), never a fresh one stored meanwhile. The
/// default (0) is no stored value's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Generation(u64);

/// What a caller gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The value stored.
    Serve,
    /// A fetch (and, if it fails, the value stored while it is valid).
    Fetch,
    /// The failure held.
    Fail,
}

/// The failures since the last success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    /// When the last one happened.
    pub last: Instant,
    /// How many in a row.
    pub count: u32,
    /// How long the last one is shared before anyone asks again.
    pub hold: Duration,
}

/// How long after the `count`th failure in a row a still-valid value's
/// refresh is tried again: the hold, doubled per failure, at most
/// [`MAX_RETRY`] (or the hold, if longer): a [`crate::backoff::Backoff`]
/// without jitter.
pub fn retry_delay(hold: Duration, count: u32) -> Duration {
    Backoff {
        base: hold,
        cap: MAX_RETRY.max(hold),
        jitter: Jitter::None,
        floor: Duration::ZERO,
    }
    .ceiling(count)
}

/// Serve, fetch or fail, given the value stored (its refresh time and hard
/// expiry) and the failures since the last success.
pub fn decide(now: Instant, stored: Option<(Instant, Instant)>, failed: Option<Failures>) -> Step {
    match stored {
        Some((refresh_at, _)) if now < refresh_at => Step::Serve,
        Some((_, expires_at)) if now < expires_at => match failed {
            Some(f) if now < f.last + retry_delay(f.hold, f.count) => Step::Serve,
            _ => Step::Fetch,
        },
        _ => match failed {
            Some(f) if now < f.last + f.hold => Step::Fail,
            _ => Step::Fetch,
        },
    }
}

/// A value in the cache, with its deadlines on tokio's clock.
#[derive(Debug)]
struct Stored<T> {
    value: T,
    generation: Generation,
    refresh_at: Instant,
    expires_at: Instant,
}

#[derive(Debug)]
struct State<T> {
    stored: Option<Stored<T>>,
    failed: Option<(Failures, AuthError)>,
    /// The generation of the last value stored.
    last_generation: u64,
}

/// How many stored values [`Cache::recent`] remembers: the current one and
/// the one before, which requests still in flight may carry.
const RECENT: usize = 2;

/// A single-flight cache of one expiring credential.
#[derive(Debug)]
pub struct Cache<T> {
    /// For logs: what is cached, e.g. "the IAM token of project p".
    what: String,
    hold: fn(&AuthError) -> Duration,
    state: tokio::sync::Mutex<State<T>>,
    recent: Mutex<VecDeque<T>>,
}

impl<T: Expiring> Cache<T> {
    /// `hold` says how long a failure is shared when no valid value is left.
    pub fn new(what: String, hold: fn(&AuthError) -> Duration) -> Self {
        Cache {
            what,
            hold,
            state: tokio::sync::Mutex::new(State {
                stored: None,
                failed: None,
                last_generation: 0,
            }),
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
        }
    }

    /// The value and its generation, from the cache or, once for all
    /// waiting callers, from `fetch` (given the value stored, if any).
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<(T, Generation), AuthError>
    where
        F: FnOnce(Option<T>) -> Fut,
        Fut: Future<Output = Result<T, AuthError>>,
    {
        let mut state = self.state.lock().await;
        let times = state.stored.as_ref().map(|h| {
            // The deadlines, unless the wall clock says earlier (the
            // monotonic clock stands still while the machine is suspended).
            let (refresh_at, expires_at) = wall_deadlines(&h.value);
            (h.refresh_at.min(refresh_at), h.expires_at.min(expires_at))
        });
        let failed = state.failed.as_ref().map(|(f, _)| *f);
        match (
            decide(Instant::now(), times, failed),
            &state.stored,
            &state.failed,
        ) {
            (Step::Serve, Some(h), _) => return Ok((h.value.clone(), h.generation)),
            (Step::Fail, _, Some((_, e))) => return Err(e.clone()),
            _ => {}
        }
        let previous = state.stored.as_ref().map(|h| h.value.clone());
        match fetch(previous).await {
            Ok(fresh) => {
                state.last_generation += 1;
                let generation = Generation(state.last_generation);
                state.stored = Some(stored(fresh.clone(), generation));
                state.failed = None;
                let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
                if recent.len() == RECENT {
                    recent.pop_front();
                }
                recent.push_back(fresh.clone());
                Ok((fresh, generation))
            }
            Err(e) => {
                let now = Instant::now();
                let failures = Failures {
                    last: now,
                    count: failed.map_or(0, |f| f.count).saturating_add(1),
                    hold: (self.hold)(&e),
                };
                state.failed = Some((failures, e.clone()));
                // The expiry `decide` judged by: the earlier of the monotonic
                // and the wall-clock one, so a value that expired while the
                // machine was suspended is not served.
                match (&state.stored, times) {
                    (Some(h), Some((_, expires_at))) if now < expires_at => {
                        let retry = retry_delay(failures.hold, failures.count);
                        tracing::warn!(
                            error = %e,
                            valid_for = %humantime::format_duration(secs(expires_at - now)),
                            retry_in = %humantime::format_duration(retry),
                            "refreshing {} failed; the current one is still valid and stays in use",
                            self.what
                        );
                        Ok((h.value.clone(), h.generation))
                    }
                    _ => Err(e),
                }
            }
        }
    }

    /// Forgets the value of `generation`, if it is still the one stored.
    pub async fn invalidate(&self, generation: Generation) {
        let mut state = self.state.lock().await;
        if state
            .stored
            .as_ref()
            .is_some_and(|h| h.generation == generation)
        {
            state.stored = None;
        }
    }

    /// The values most recently stored (at most two), without waiting.
    pub fn recent(&self) -> Vec<T> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().cloned().collect()
    }
}

/// A value with its wall-clock times turned into deadlines on tokio's clock.
fn stored<T: Expiring>(value: T, generation: Generation) -> Stored<T> {
    let (refresh_at, expires_at) = wall_deadlines(&value);
    Stored {
        refresh_at,
        expires_at,
        value,
        generation,
    }
}

/// A value's refresh time and expiry as deadlines on tokio's clock, from the
/// wall clock now.
fn wall_deadlines<T: Expiring>(value: &T) -> (Instant, Instant) {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let at = |t: SystemTime| now + t.duration_since(wall).unwrap_or(Duration::ZERO);
    (at(value.refresh_at()), at(value.expires_at()))
}

/// Whole seconds, for logs.
fn secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn retry_delays_double_from_the_hold_up_to_the_cap() {
        let s = Duration::from_secs;
        assert_eq!(retry_delay(s(5), 1), s(5));
        assert_eq!(retry_delay(s(5), 2), s(10));
        assert_eq!(retry_delay(s(5), 4), s(40));
        assert_eq!(retry_delay(s(5), 10), MAX_RETRY);
        assert_eq!(retry_delay(s(5), u32::MAX), MAX_RETRY);
        assert_eq!(retry_delay(s(600), 3), s(600));
    }

    #[test]
    fn a_failed_refresh_serves_the_valid_value_until_its_hard_expiry() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let held = Some((t0 + s(100), t0 + s(200)));
        let failed = |at: u64, count| {
            Some(Failures {
                last: t0 + s(at),
                count,
                hold: s(5),
            })
        };
        // Fresh, then due for refresh.
        assert_eq!(decide(t0, held, None), Step::Serve);
        assert_eq!(decide(t0 + s(100), held, None), Step::Fetch);
        // A refresh failed at 100: the value is served, retried 5 s later,
        // then 10 s after a second failure.
        assert_eq!(decide(t0 + s(104), held, failed(100, 1)), Step::Serve);
        assert_eq!(decide(t0 + s(105), held, failed(100, 1)), Step::Fetch);
        assert_eq!(decide(t0 + s(114), held, failed(105, 2)), Step::Serve);
        assert_eq!(decide(t0 + s(115), held, failed(105, 2)), Step::Fetch);
        // Past the hard expiry the failure is shared for its hold, then
        // asked again.
        assert_eq!(decide(t0 + s(200), held, failed(198, 6)), Step::Fail);
        assert_eq!(decide(t0 + s(203), held, failed(198, 6)), Step::Fetch);
        // Nothing held: fetch, or the failure within its hold.
        assert_eq!(decide(t0, None, None), Step::Fetch);
        assert_eq!(decide(t0 + s(4), None, failed(0, 1)), Step::Fail);
        assert_eq!(decide(t0 + s(5), None, failed(0, 1)), Step::Fetch);
    }

    #[derive(Debug, Clone, PartialEq)]
    struct Value {
        n: u64,
        refresh_at: SystemTime,
        expires_at: SystemTime,
    }

    impl Expiring for Value {
        fn refresh_at(&self) -> SystemTime {
            self.refresh_at
        }
        fn expires_at(&self) -> SystemTime {
            self.expires_at
        }
    }

    fn outage() -> AuthError {
        AuthError::Iam {
            iam: "https://iam.example".into(),
            user: "u".into(),
            detail: "HTTP 503".into(),
            transient: true,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_inside_the_margin_costs_nothing_until_the_hard_expiry() {
        let cache: Cache<Value> = Cache::new("the test value".into(), |_| Duration::from_secs(5));
        let calls = AtomicU32::new(0);
        let up = std::sync::atomic::AtomicBool::new(true);
        let get = || {
            cache.get(|_| async {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                if !up.load(Ordering::SeqCst) {
                    return Err(outage());
                }
                let now = SystemTime::now();
                Ok(Value {
                    n: n.into(),
                    refresh_at: now + Duration::from_secs(60),
                    expires_at: now + Duration::from_secs(600),
                })
            })
        };
        let first = get().await.unwrap();
        assert_eq!(get().await.unwrap(), first);
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        up.store(false, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(61)).await;
        // The refresh fails: the valid value is served.
        assert_eq!(get().await.unwrap(), first);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Not asked again before the backoff, asked after it.
        assert_eq!(get().await.unwrap(), first);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(get().await.unwrap(), first);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(get().await.unwrap(), first);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "the second retry waits 10 s"
        );

        // Past the hard expiry the failure is returned.
        tokio::time::advance(Duration::from_secs(600)).await;
        assert_eq!(get().await.unwrap_err(), outage());
        // Back up: a fresh value, and the old one is forgotten.
        up.store(true, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(5)).await;
        let fresh = get().await.unwrap();
        assert_ne!(fresh, first);
        assert_eq!(cache.recent(), vec![first.0, fresh.0]);
    }

    /// A refusal drops exactly the value refused: a second refusal of the
    /// same (old) generation does not throw away the fresh value fetched
    /// meanwhile.
    #[tokio::test(start_paused = true)]
    async fn invalidating_drops_only_the_generation_refused() {
        let cache: Cache<Value> = Cache::new("the test value".into(), |_| Duration::from_secs(5));
        let calls = AtomicU32::new(0);
        let get = || {
            cache.get(|_| async {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                let now = SystemTime::now();
                Ok(Value {
                    n: n.into(),
                    refresh_at: now + Duration::from_secs(60),
                    expires_at: now + Duration::from_secs(600),
                })
            })
        };
        let (first, g1) = get().await.unwrap();
        assert_eq!(
            get().await.unwrap(),
            (first.clone(), g1),
            "served, same generation"
        );
        cache.invalidate(g1).await;
        let (second, g2) = get().await.unwrap();
        assert_ne!(g1, g2);
        assert_eq!((first.n, second.n), (1, 2));
        // The old generation again (another request refused with it): kept.
        cache.invalidate(g1).await;
        cache.invalidate(Generation::default()).await;
        assert_eq!(get().await.unwrap(), (second, g2));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    /// A value whose wall-clock times move back by `skew` seconds: the same,
    /// to the cache, as the wall clock moving ahead while the monotonic one
    /// stands still (a suspended machine).
    #[derive(Debug, Clone)]
    struct Skewed {
        refresh_at: SystemTime,
        expires_at: SystemTime,
        skew: std::sync::Arc<std::sync::atomic::AtomicU64>,
    }

    impl Expiring for Skewed {
        fn refresh_at(&self) -> SystemTime {
            self.refresh_at - Duration::from_secs(self.skew.load(Ordering::SeqCst))
        }
        fn expires_at(&self) -> SystemTime {
            self.expires_at - Duration::from_secs(self.skew.load(Ordering::SeqCst))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_value_that_expired_during_a_suspend_is_not_served_when_its_refresh_fails() {
        let cache: Cache<Skewed> = Cache::new("the test value".into(), |_| Duration::from_secs(5));
        let skew = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let up = std::sync::atomic::AtomicBool::new(true);
        let get = || {
            cache.get(|_| async {
                if !up.load(Ordering::SeqCst) {
                    return Err(outage());
                }
                let now = SystemTime::now();
                Ok(Skewed {
                    refresh_at: now + Duration::from_secs(60),
                    expires_at: now + Duration::from_secs(600),
                    skew: skew.clone(),
                })
            })
        };
        get().await.unwrap();
        // The machine sleeps for 700 s: the monotonic deadline (600 s) is
        // still ahead, the wall-clock expiry is past. The refresh fails.
        up.store(false, Ordering::SeqCst);
        skew.store(700, Ordering::SeqCst);
        assert_eq!(get().await.unwrap_err(), outage());
        // And the failure is shared for its hold, not the expired value.
        assert_eq!(get().await.unwrap_err(), outage());
    }
}
