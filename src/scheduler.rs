//! The scheduler: when each instance syncs next, and how many sync at once.
//!
//! One loop owns every instance's timer; there is no task per instance at
//! rest, only one entry in a table and one `sleep_until` for the earliest due
//! time. Syncs run as tasks in a [`JoinSet`], never more than `concurrency` at
//! once, so requests in flight to the API never exceed it either. One
//! instance's failure only moves its own due time.
//!
//! The timing rules are the pure function [`next_delay`]:
//! * after a success: `interval` plus a uniformly random share of `jitter`,
//!   or sooner when the round says so (`due_within`: a kept certificate
//!   is due to leave its file);
//! * after a failure: exponential backoff with full jitter (a random delay
//!   between zero and `min(max_backoff, 2s × 2^(failures-1))`, at least one
//!   second: [`backoff`], a [`crate::backoff::Backoff`]), and never sooner
//!   than the server's `Retry-After`.
//!
//! The first round of every instance starts at once. A round that panics
//! (debug builds; release builds abort) counts as a failure of its instance.
//!
//! The file runs past 500 lines for its unit tests, which sit beside the code
//! they pin (the code is under 440 lines).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::backoff::{Backoff, Jitter};

/// The smallest step of the backoff.
pub const BACKOFF_BASE: Duration = Duration::from_secs(2);
/// No failure retries sooner than this.
pub const MIN_RETRY: Duration = Duration::from_secs(1);

/// Timing settings, from `[sync]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub interval: Duration,
    pub jitter: Duration,
    pub max_backoff: Duration,
}

impl From<&crate::config::SyncSettings> for Timing {
    fn from(s: &crate::config::SyncSettings) -> Timing {
        Timing {
            interval: s.interval,
            jitter: s.jitter,
            max_backoff: s.max_backoff,
        }
    }
}

/// What the scheduler needs to know of a finished round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoundResult {
    pub ok: bool,
    pub retry_after: Option<Duration>,
    /// After a success, the next round comes within this at the latest (a
    /// kept certificate is due to leave its file).
    pub due_within: Option<Duration>,
}

/// The scheduler's backoff after failed rounds: from [`BACKOFF_BASE`],
/// capped at `max_backoff`, full jitter, at least [`MIN_RETRY`].
pub fn backoff(max_backoff: Duration) -> Backoff {
    Backoff {
        base: BACKOFF_BASE,
        cap: max_backoff,
        jitter: Jitter::Full,
        floor: MIN_RETRY,
    }
}

/// The backoff cap after `failures` consecutive failures (≥ 1).
pub fn backoff_cap(failures: u32, max_backoff: Duration) -> Duration {
    backoff(max_backoff).ceiling(failures)
}

/// The delay before an instance's next round. `failures` counts consecutive
/// failures including this round's; `r` is a random number in `[0, 1)`.
pub fn next_delay(result: RoundResult, failures: u32, t: &Timing, r: f64) -> Duration {
    let r = if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) };
    if result.ok {
        let regular = t.interval + t.jitter.mul_f64(r);
        return result.due_within.map_or(regular, |d| d.min(regular));
    }
    let backoff = backoff(t.max_backoff).delay(failures, r);
    match result.retry_after {
        Some(ra) => backoff.max(ra),
        None => backoff,
    }
}

/// A boxed round future.
pub type RoundFuture = Pin<Box<dyn Future<Output = RoundResult> + Send>>;
/// Starts the round of the instance with the given key.
pub type RoundFn = Arc<dyn Fn(String) -> RoundFuture + Send + Sync>;

/// Requests from the service to the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Sync every instance now (after a reload, for example).
    SyncAllNow,
    /// The set of instances changed: new keys start now, gone keys stop.
    SetInstances(Vec<String>),
    /// New timing settings, applied from the next round on.
    SetTiming(Timing, usize),
    /// Sync these instances now (their settings changed); unknown keys are ignored.
    SyncNow(Vec<String>),
    /// Sync these instances soon: now, bypassing the timer, but not the
    /// backoff or `Retry-After` of an instance whose last round failed
    /// (a probe found the file does not match the server); unknown keys
    /// are ignored.
    SyncSoon(Vec<String>),
    /// Do nothing: a turn of the loop, so that [`Observer::tick`] proves it alive.
    Ping,
}

/// What the loop reports after each round.
pub trait Observer {
    fn round_done(&mut self, key: &str, result: &RoundResult, next_in: Duration);
    /// Called on every turn of the loop: proof of progress for a watchdog.
    fn tick(&mut self) {}
}

/// The scheduler's starting point.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The instances' keys; each one's first round starts at once.
    pub keys: Vec<String>,
    pub timing: Timing,
    /// Rounds in progress at once, at most.
    pub concurrency: usize,
    /// How long rounds in progress may finish after shutdown.
    pub grace: Duration,
}

#[derive(Debug)]
struct Entry {
    due: Instant,
    /// Where the entry came in, so that entries due at the same instant
    /// start in the order the config lists them.
    seq: u64,
    failures: u32,
    running: bool,
    /// Removed while running: drop it when the round finishes.
    removed: bool,
    /// Asked to sync now while running: run again as soon as it finishes
    /// (after a success; a failure keeps its backoff).
    again: bool,
}

impl Entry {
    /// Waiting for its due time: neither running nor removed.
    fn idle(&self) -> bool {
        !self.running && !self.removed
    }

    /// Due now, or right after the round in progress.
    fn sync_now(&mut self, now: Instant) {
        if self.running {
            self.again = true;
        } else {
            self.due = now;
        }
    }

    /// As [`Entry::sync_now`], unless the last round failed: then the
    /// backoff (or `Retry-After`) it set stands.
    fn sync_soon(&mut self, now: Instant) {
        if self.running || self.failures == 0 {
            self.sync_now(now);
        }
    }
}

/// Every instance's timer. An idle entry also sits in `queue` under its due
/// time, so the next one due is found without looking at the others: with
/// thousands of instances, each start and each finished round costs a
/// logarithm, not a pass over the table.
///
/// Invariant: `queue` maps `(due, seq)` to the key exactly for the idle
/// entries (`seq` is unique to an entry, so the pair is too, and taking an
/// entry out needs no copy of its key). Every change of an entry goes
/// through [`Table::update`], which keeps it.
#[derive(Debug, Default)]
struct Table {
    entries: HashMap<String, Entry>,
    queue: BTreeMap<(Instant, u64), String>,
    next_seq: u64,
}

impl Table {
    fn new(keys: Vec<String>, now: Instant) -> Table {
        let mut table = Table::default();
        for key in keys {
            table.insert(key, now);
        }
        table
    }

    /// A new entry, due at `due` (an existing one is left as it is).
    fn insert(&mut self, key: String, due: Instant) {
        if self.entries.contains_key(&key) {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.insert((due, seq), key.clone());
        let entry = Entry {
            due,
            seq,
            failures: 0,
            running: false,
            removed: false,
            again: false,
        };
        self.entries.insert(key, entry);
    }

    /// Applies `change` to the entry of `key`, if there is one, keeping the
    /// queue in step; an entry that ends up removed and not running leaves
    /// the table.
    fn update<R>(&mut self, key: &str, change: impl FnOnce(&mut Entry) -> R) -> Option<R> {
        let entry = self.entries.get_mut(key)?;
        if entry.idle() {
            self.queue.remove(&(entry.due, entry.seq));
        }
        let out = change(entry);
        if entry.idle() {
            self.queue.insert((entry.due, entry.seq), key.to_string());
        } else if entry.removed && !entry.running {
            self.entries.remove(key);
        }
        Some(out)
    }

    /// The earliest idle entry due by `now`, marked running.
    fn start_next(&mut self, now: Instant) -> Option<String> {
        let (&(due, _), key) = self.queue.first_key_value()?;
        if due > now {
            return None;
        }
        let key = key.clone();
        self.update(&key, |e| e.running = true);
        Some(key)
    }

    /// When the earliest idle entry is due.
    fn next_due(&self) -> Option<Instant> {
        self.queue.first_key_value().map(|(&(due, _), _)| due)
    }

    /// The set of instances is now `keys`: new ones are due at `now`, gone
    /// ones stop (a running one when its round ends), the others keep their
    /// timers.
    fn set_instances(&mut self, keys: Vec<String>, now: Instant) {
        let keep: HashSet<&str> = keys.iter().map(String::as_str).collect();
        let gone: Vec<String> = self
            .entries
            .keys()
            .filter(|k| !keep.contains(k.as_str()))
            .cloned()
            .collect();
        for key in gone {
            self.update(&key, |e| e.removed = true);
        }
        for key in keys {
            if self.update(&key, |e| e.removed = false).is_none() {
                self.insert(key, now);
            }
        }
    }
}

/// The loop's state between two turns: the timers, the rounds in flight and
/// the settings commands change.
struct Loop {
    table: Table,
    tasks: JoinSet<RoundResult>,
    /// Which instance each running task belongs to, so that a round that
    /// panicked is still accounted to its instance.
    running: HashMap<tokio::task::Id, String>,
    round: RoundFn,
    timing: Timing,
    concurrency: usize,
}

impl Loop {
    /// Starts what is due, earliest first, up to the concurrency limit.
    fn start_due(&mut self) {
        let now = Instant::now();
        while self.tasks.len() < self.concurrency {
            let Some(key) = self.table.start_next(now) else {
                break;
            };
            let handle = self.tasks.spawn((self.round)(key.clone()));
            self.running.insert(handle.id(), key);
        }
    }

    /// When the loop must wake up to start a round: never while it is at
    /// the concurrency limit (a finished round wakes it then).
    fn wake_at(&self) -> Option<Instant> {
        if self.tasks.len() < self.concurrency {
            self.table.next_due()
        } else {
            None
        }
    }

    /// A round ended: its instance's next due time, and the observer told.
    fn finished(
        &mut self,
        joined: Result<(tokio::task::Id, RoundResult), tokio::task::JoinError>,
        observer: &mut dyn Observer,
    ) {
        let (id, result) = match joined {
            Ok((id, result)) => (id, result),
            Err(e) => {
                // A bug (debug builds unwind): a failed round, retried on
                // the backoff like any other failure.
                tracing::error!("a sync round ended abnormally: {e}");
                (
                    e.id(),
                    RoundResult {
                        ok: false,
                        ..RoundResult::default()
                    },
                )
            }
        };
        let Some(key) = self.running.remove(&id) else {
            return;
        };
        let timing = self.timing;
        self.table.update(&key, |e| {
            e.running = false;
            e.failures = if result.ok {
                0
            } else {
                e.failures.saturating_add(1)
            };
            let delay = next_delay(result, e.failures.max(1), &timing, fastrand::f64());
            e.due = Instant::now() + delay;
            if std::mem::take(&mut e.again) && result.ok {
                e.due = Instant::now();
            }
            if !e.removed {
                observer.round_done(&key, &result, delay);
            }
        });
    }

    /// Applies one command of the service.
    fn apply(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::SyncAllNow => {
                let keys: Vec<String> = self.table.entries.keys().cloned().collect();
                self.each(&keys, |e| e.sync_now(now));
            }
            Command::SetInstances(keys) => self.table.set_instances(keys, now),
            Command::SetTiming(t, c) => {
                self.timing = t;
                self.concurrency = c.max(1);
            }
            Command::SyncNow(keys) => self.each(&keys, |e| e.sync_now(now)),
            Command::SyncSoon(keys) => self.each(&keys, |e| e.sync_soon(now)),
            Command::Ping => {}
        }
    }

    /// Applies `change` to each known key of `keys`; unknown keys are ignored.
    fn each(&mut self, keys: &[String], change: impl Fn(&mut Entry)) {
        for key in keys {
            self.table.update(key, &change);
        }
    }
}

/// Runs rounds forever, until `shutdown` resolves. Rounds in progress at
/// shutdown get `grace` to finish, then are dropped.
pub async fn run(
    setup: Setup,
    round: RoundFn,
    mut commands: mpsc::Receiver<Command>,
    observer: &mut dyn Observer,
    shutdown: impl Future<Output = ()>,
) {
    let mut state = Loop {
        table: Table::new(setup.keys, Instant::now()),
        tasks: JoinSet::new(),
        running: HashMap::new(),
        round,
        timing: setup.timing,
        concurrency: setup.concurrency,
    };
    let mut commands_open = true;
    tokio::pin!(shutdown);

    loop {
        observer.tick();
        state.start_due();
        let wake_at = state.wake_at();
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(joined) = state.tasks.join_next_with_id(), if !state.tasks.is_empty() => {
                state.finished(joined, observer);
            }
            cmd = commands.recv(), if commands_open => match cmd {
                None => commands_open = false,
                Some(command) => state.apply(command),
            },
            _ = sleep_until_opt(wake_at), if wake_at.is_some() => {}
        }
    }

    // Let rounds in progress finish (a replacement under way completes in
    // any case: it runs on the blocking pool), then drop the rest.
    let tasks = &mut state.tasks;
    let _ = tokio::time::timeout(setup.grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
}

/// Sleeps until `when`, or forever when there is no `when`.
pub(crate) async fn sleep_until_opt(when: Option<Instant>) {
    match when {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    const T: Timing = Timing {
        interval: Duration::from_secs(3600),
        jitter: Duration::from_secs(300),
        max_backoff: Duration::from_secs(1800),
    };

    fn ok() -> RoundResult {
        RoundResult {
            ok: true,
            ..RoundResult::default()
        }
    }
    fn fail(retry_after: Option<u64>) -> RoundResult {
        RoundResult {
            ok: false,
            retry_after: retry_after.map(Duration::from_secs),
            ..RoundResult::default()
        }
    }

    /// The queue holds exactly the idle entries, each under its due time.
    fn assert_queue_matches(t: &Table) {
        let idle: BTreeMap<(Instant, u64), String> = t
            .entries
            .iter()
            .filter(|(_, e)| e.idle())
            .map(|(k, e)| ((e.due, e.seq), k.clone()))
            .collect();
        assert_eq!(t.queue, idle);
    }

    #[tokio::test(start_paused = true)]
    async fn the_queue_follows_every_change_of_the_table() {
        let now = Instant::now();
        let keys = |ks: &[&str]| ks.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        let mut t = Table::new(keys(&["c", "a", "b"]), now);
        assert_queue_matches(&t);
        // Due at the same instant: config order, not name order.
        assert_eq!(t.start_next(now).as_deref(), Some("c"));
        assert_queue_matches(&t);
        t.update("a", |e| e.due = now + Duration::from_secs(5));
        assert_queue_matches(&t);
        assert_eq!(t.start_next(now).as_deref(), Some("b"));
        assert_eq!(t.start_next(now), None, "a is not due yet");
        assert_eq!(t.next_due(), Some(now + Duration::from_secs(5)));
        // "c" and "b" run; "c" is dropped from the config, "d" comes in.
        t.set_instances(keys(&["a", "b", "d"]), now);
        assert_queue_matches(&t);
        assert!(
            t.entries["c"].removed,
            "a running entry stays until its round ends"
        );
        assert_eq!(t.start_next(now).as_deref(), Some("d"));
        // "c"'s round ends: it leaves the table; "b"'s ends: it waits again.
        t.update("c", |e| e.running = false);
        assert!(!t.entries.contains_key("c"));
        t.update("b", |e| {
            e.running = false;
            e.due = now + Duration::from_secs(1);
        });
        assert_queue_matches(&t);
        assert_eq!(t.next_due(), Some(now + Duration::from_secs(1)));
        // An idle entry removed leaves at once; brought back, it starts now.
        t.set_instances(keys(&["b", "d"]), now);
        assert!(!t.entries.contains_key("a"));
        t.set_instances(keys(&["a", "b", "d"]), now);
        assert_queue_matches(&t);
        assert_eq!(t.start_next(now).as_deref(), Some("a"));
        assert_eq!(t.update("nobody", |e| e.due = now), None);
        assert_queue_matches(&t);
    }

    #[test]
    fn success_waits_interval_plus_jitter_share() {
        assert_eq!(next_delay(ok(), 0, &T, 0.0), Duration::from_secs(3600));
        assert_eq!(next_delay(ok(), 0, &T, 0.5), Duration::from_secs(3750));
    }

    #[test]
    fn a_due_drop_brings_the_next_round_forward_after_a_success_only() {
        let due = |s| RoundResult {
            due_within: Some(Duration::from_secs(s)),
            ..ok()
        };
        assert_eq!(next_delay(due(60), 0, &T, 0.5), Duration::from_secs(60));
        // Never later than the regular interval.
        assert_eq!(
            next_delay(due(99_999), 0, &T, 0.0),
            Duration::from_secs(3600)
        );
        // A failure keeps its backoff (and a server's Retry-After).
        let failed = RoundResult {
            due_within: Some(Duration::ZERO),
            ..fail(Some(120))
        };
        assert_eq!(next_delay(failed, 1, &T, 0.5), Duration::from_secs(120));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_cap(1, T.max_backoff), Duration::from_secs(2));
        assert_eq!(backoff_cap(2, T.max_backoff), Duration::from_secs(4));
        assert_eq!(backoff_cap(5, T.max_backoff), Duration::from_secs(32));
        assert_eq!(backoff_cap(11, T.max_backoff), Duration::from_secs(1800));
        assert_eq!(backoff_cap(1000, T.max_backoff), Duration::from_secs(1800));
    }

    #[test]
    fn failure_uses_full_jitter_with_a_floor() {
        assert_eq!(next_delay(fail(None), 5, &T, 0.0), MIN_RETRY);
        assert_eq!(next_delay(fail(None), 5, &T, 0.5), Duration::from_secs(16));
        assert!(next_delay(fail(None), 50, &T, 0.999) <= T.max_backoff);
    }

    #[test]
    fn retry_after_is_a_floor() {
        assert_eq!(
            next_delay(fail(Some(120)), 1, &T, 0.9),
            Duration::from_secs(120)
        );
        assert_eq!(
            next_delay(fail(Some(1)), 5, &T, 0.5),
            Duration::from_secs(16)
        );
    }

    /// Records when each key's rounds started, in paused time.
    #[derive(Default)]
    struct Log {
        starts: Mutex<Vec<(String, Duration)>>,
    }

    struct NullObserver;
    impl Observer for NullObserver {
        fn round_done(&mut self, _: &str, _: &RoundResult, _: Duration) {}
    }

    type Starts = Arc<Mutex<Vec<(String, u64)>>>;

    /// A round that records (key, second it started) and takes `takes`.
    fn recording_round(takes: Duration) -> (Starts, RoundFn) {
        let started: Starts = Arc::default();
        let s = Arc::clone(&started);
        let t0 = Instant::now();
        let round: RoundFn = Arc::new(move |key| {
            let s = Arc::clone(&s);
            Box::pin(async move {
                s.lock().unwrap().push((key, t0.elapsed().as_secs()));
                tokio::time::sleep(takes).await;
                ok()
            })
        });
        (started, round)
    }

    fn sorted(starts: &Starts) -> Vec<(String, u64)> {
        let mut v = starts.lock().unwrap().clone();
        v.sort();
        v
    }

    /// Runs the scheduler with timing `T` for `run_for` of (paused) time.
    async fn run_for(
        keys: &[&str],
        concurrency: usize,
        round: RoundFn,
        rx: mpsc::Receiver<Command>,
        run_for: Duration,
    ) {
        let setup = Setup {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            timing: T,
            concurrency,
            grace: Duration::from_millis(10),
        };
        run(
            setup,
            round,
            rx,
            &mut NullObserver,
            tokio::time::sleep(run_for),
        )
        .await;
    }

    /// Runs the scheduler for `run_for` of paused time with scripted results.
    async fn drive(
        keys: &[&str],
        timing: Timing,
        concurrency: usize,
        script: impl Fn(&str, usize) -> (Duration, RoundResult) + Send + Sync + 'static,
        run_for: Duration,
    ) -> Vec<(String, Duration)> {
        let log = Arc::new(Log::default());
        let start = Instant::now();
        let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let script = Arc::new(script);
        let l = Arc::clone(&log);
        let round: RoundFn = Arc::new(move |key: String| {
            let l = Arc::clone(&l);
            let counts = Arc::clone(&counts);
            let script = Arc::clone(&script);
            Box::pin(async move {
                let n = {
                    let mut c = counts.lock().unwrap();
                    let n = c.entry(key.clone()).or_default();
                    *n += 1;
                    *n
                };
                l.starts
                    .lock()
                    .unwrap()
                    .push((key.clone(), start.elapsed()));
                let (takes, result) = script(&key, n);
                tokio::time::sleep(takes).await;
                result
            })
        });
        let (_tx, rx) = mpsc::channel(1);
        run(
            Setup {
                keys: keys.iter().map(|s| s.to_string()).collect(),
                timing,
                concurrency,
                grace: Duration::from_millis(100),
            },
            round,
            rx,
            &mut NullObserver,
            tokio::time::sleep(run_for),
        )
        .await;
        log.starts.lock().unwrap().clone()
    }

    fn starts_of(log: &[(String, Duration)], key: &str) -> Vec<u64> {
        log.iter()
            .filter(|(k, _)| k == key)
            .map(|(_, d)| d.as_secs())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_and_failure_does_not_delay_others() {
        let timing = Timing {
            interval: Duration::from_secs(100),
            jitter: Duration::ZERO,
            max_backoff: Duration::from_secs(1000),
        };
        let log = drive(
            &["bad", "good"],
            timing,
            8,
            |key, n| match (key, n) {
                ("bad", 1) => (Duration::ZERO, fail(Some(30))),
                _ => (Duration::ZERO, ok()),
            },
            Duration::from_secs(250),
        )
        .await;
        // "bad" waits out its Retry-After, then follows the interval.
        assert_eq!(starts_of(&log, "bad"), vec![0, 30, 130, 230]);
        // "good" runs on its own schedule regardless.
        assert_eq!(starts_of(&log, "good"), vec![0, 100, 200]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_that_panics_counts_as_a_failure_and_runs_again_after_a_backoff() {
        let timing = Timing {
            interval: Duration::from_secs(100),
            jitter: Duration::ZERO,
            max_backoff: Duration::from_secs(60),
        };
        let log = drive(
            &["x", "y"],
            timing,
            1,
            |key, n| {
                if key == "x" && n == 1 {
                    panic!("a bug in a round");
                }
                (Duration::ZERO, ok())
            },
            Duration::from_secs(150),
        )
        .await;
        // Retried within the first backoff step (1..=2 s), then on the interval.
        let x = starts_of(&log, "x");
        assert_eq!(x.len(), 3, "{x:?}");
        assert!((1..=2).contains(&x[1]), "{x:?}");
        assert_eq!(x[2], x[1] + 100, "{x:?}");
        // The other instance was not held up.
        assert_eq!(starts_of(&log, "y"), vec![0, 100]);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_grows_and_stays_under_the_cap() {
        let timing = Timing {
            interval: Duration::from_secs(10_000),
            jitter: Duration::ZERO,
            max_backoff: Duration::from_secs(60),
        };
        // The scheduler draws its jitter from this thread's generator (the
        // test runtime is single-threaded): seeded, every gap is known.
        const SEED: u64 = 0x0ba_c0ff;
        fastrand::seed(SEED);
        let log = drive(
            &["x"],
            timing,
            1,
            |_, _| (Duration::ZERO, fail(None)),
            Duration::from_secs(3600),
        )
        .await;
        let starts: Vec<Duration> = log.iter().map(|(_, d)| *d).collect();
        let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.len() > 30, "kept retrying: {gaps:?}");
        let mut rng = fastrand::Rng::with_seed(SEED);
        for (i, g) in gaps.iter().enumerate() {
            // The i-th gap follows the (i+1)-th consecutive failure.
            let failures = i as u32 + 1;
            let want = next_delay(fail(None), failures, &timing, rng.f64());
            let cap = backoff_cap(failures, timing.max_backoff);
            assert!(
                *g >= MIN_RETRY && *g <= cap,
                "gap {i} = {g:?} outside [1s, {cap:?}]"
            );
            assert!(
                g.abs_diff(want) < Duration::from_millis(5),
                "gap {i} = {g:?}, want {want:?}: the failure count must grow"
            );
        }
        // Under full jitter the later gaps spread over the whole 60 s cap;
        // with the count stuck at one they would all stay under 2 s.
        let late_max = gaps[10..].iter().max().unwrap();
        assert!(*late_max > Duration::from_secs(30), "{gaps:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_concurrency_rounds_at_once() {
        let in_flight = Arc::new(Mutex::new((0usize, 0usize)));
        let f = Arc::clone(&in_flight);
        let round: RoundFn = Arc::new(move |_key| {
            let f = Arc::clone(&f);
            Box::pin(async move {
                {
                    let mut g = f.lock().unwrap();
                    g.0 += 1;
                    g.1 = g.1.max(g.0);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                f.lock().unwrap().0 -= 1;
                ok()
            })
        });
        let keys: Vec<String> = (0..20).map(|i| format!("i{i}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let (_tx, rx) = mpsc::channel(1);
        run_for(&keys, 3, round, rx, Duration::from_secs(60)).await;
        assert_eq!(in_flight.lock().unwrap().1, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn commands_add_remove_and_resync() {
        let (started, round) = recording_round(Duration::ZERO);
        let (tx, rx) = mpsc::channel(4);
        let driver = async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            tx.send(Command::SetInstances(vec!["b".into(), "c".into()]))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
            tx.send(Command::SyncAllNow).await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
        };
        let sched = run_for(&["a", "b"], 4, round, rx, Duration::from_secs(30));
        tokio::join!(sched, driver);
        assert_eq!(
            sorted(&started),
            vec![
                ("a".into(), 0),
                ("b".into(), 0),
                ("b".into(), 20),
                ("c".into(), 10),
                ("c".into(), 20)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sync_now_during_a_round_runs_again_right_after_it() {
        let (started, round) = recording_round(Duration::from_secs(10));
        let (tx, rx) = mpsc::channel(4);
        let driver = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            tx.send(Command::Ping).await.unwrap();
            // "a" is running (0..10): it runs again at 10; "b" is idle: at once.
            tx.send(Command::SyncNow(vec!["a".into(), "x".into()]))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(20)).await;
            tx.send(Command::SyncNow(vec!["b".into()])).await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        };
        let sched = run_for(&["a", "b"], 4, round, rx, Duration::from_secs(30));
        tokio::join!(sched, driver);
        assert_eq!(
            sorted(&started),
            vec![
                ("a".into(), 0),
                ("a".into(), 10),
                ("b".into(), 0),
                ("b".into(), 25)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sync_soon_bypasses_the_timer_but_not_a_backoff_or_retry_after() {
        let started: Starts = Arc::default();
        let s = Arc::clone(&started);
        let t0 = Instant::now();
        let round: RoundFn = Arc::new(move |key: String| {
            let s = Arc::clone(&s);
            Box::pin(async move {
                let first = !s.lock().unwrap().iter().any(|(k, _)| *k == key);
                s.lock()
                    .unwrap()
                    .push((key.clone(), t0.elapsed().as_secs()));
                if key == "bad" && first {
                    fail(Some(40))
                } else {
                    ok()
                }
            })
        });
        let (tx, rx) = mpsc::channel(4);
        let driver = async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let keys = vec!["good".into(), "bad".into(), "x".into()];
            tx.send(Command::SyncSoon(keys)).await.unwrap();
            tokio::time::sleep(Duration::from_secs(50)).await;
        };
        let sched = run_for(&["good", "bad"], 4, round, rx, Duration::from_secs(60));
        tokio::join!(sched, driver);
        assert_eq!(
            sorted(&started),
            vec![
                ("bad".into(), 0),
                ("bad".into(), 40),
                ("good".into(), 0),
                ("good".into(), 10)
            ]
        );
    }
}
