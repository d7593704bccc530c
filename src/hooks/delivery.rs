//! Delivery: running what the hook ledger says an instance is owed, clearing
//! the record on success, and retrying failed deliveries on their own
//! backoff ([`retry_owed`]), always with the instance as the current config
//! has it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{HookCall, HookError, HookReason, hidden_env_names, run_action};
use crate::backoff::{Backoff, Jitter};
use crate::config::{Config, Instance};
use crate::ledger::{self, Ledger, Owed};
use crate::outputs::Observation;

/// The first retry of a failed hook comes after about this long; each
/// further one waits twice as long, up to `sync.max_backoff`.
pub const RETRY_BASE: Duration = Duration::from_secs(1);

/// The delay before retry number `attempt` (1 = the first) of a failed
/// hook: exponential from [`RETRY_BASE`], capped at `cap`, with jitter
/// (`rand` in 0..1) taking it down by up to half: a
/// [`crate::backoff::Backoff`]. Pure.
pub fn retry_delay(attempt: u32, cap: Duration, rand: f64) -> Duration {
    Backoff {
        base: RETRY_BASE,
        cap: cap.max(RETRY_BASE),
        jitter: Jitter::Half,
        floor: Duration::ZERO,
    }
    .delay(attempt, rand)
}

/// A failed delivery waiting for its retry. It holds no copy of the
/// instance: the retry takes the one in the current config.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) attempts: u32,
    pub(super) next: tokio::time::Instant,
}

/// What the running config says about hooks; replaced on every reload.
#[derive(Debug)]
pub(super) struct Current {
    instances: HashMap<String, Instance>,
    /// Variables a hook must not inherit, see [`hidden_env_names`].
    pub(super) hidden: Arc<[String]>,
    max_backoff: Duration,
}

impl Current {
    fn of(config: &Config) -> Current {
        Current {
            instances: config
                .instances
                .iter()
                .map(|i| (i.id.clone(), i.clone()))
                .collect(),
            hidden: hidden_env_names(config).into(),
            max_backoff: config.sync.max_backoff,
        }
    }
}

/// Whether the reload action of an instance differs between two configs.
fn same_hook(a: &Instance, b: &Instance) -> bool {
    a.on_change == b.on_change
        && a.reload_signal == b.reload_signal
        && a.hook_timeout == b.hook_timeout
}

/// The delivery locks of the instances in a round, by instance ID.
type Locks = Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>;

/// Proof that the caller holds an instance's delivery lock. Dropping it
/// releases the lock, and forgets it when nobody else holds or awaits it:
/// the table holds the instances in a round, not every instance ever synced.
pub struct Held {
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    instance_id: String,
    locks: Locks,
}

impl Drop for Held {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = lock(&self.locks);
        // Under the table's lock, as in `hold`: one reference means only the
        // table's, so no task holds this lock or waits for it.
        if locks
            .get(&self.instance_id)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(&self.instance_id);
        }
    }
}

/// Delivers owed hooks: one per process, shared by the rounds and
/// [`retry_owed`].
#[derive(Debug)]
pub struct Delivery {
    ledger: Ledger,
    pub(super) current: Mutex<Current>,
    pub(super) locks: Locks,
    pub(super) pending: Mutex<HashMap<String, Pending>>,
    wake: tokio::sync::Notify,
    /// Instances whose record this process created: any other record is
    /// from an earlier run ([`HookReason::RestoredAfterCrash`]).
    own: Mutex<std::collections::HashSet<String>>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Delivery {
    /// A delivery keeping its records in the config's `sync.state_dir`.
    pub fn new(config: &Config) -> Delivery {
        Delivery {
            ledger: Ledger::new(&config.sync.state_dir),
            current: Mutex::new(Current::of(config)),
            locks: Locks::default(),
            pending: Mutex::default(),
            wake: tokio::sync::Notify::new(),
            own: Mutex::default(),
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Switches to a reloaded config (`sync.state_dir` excepted, which is
    /// kept). Retries of instances no longer configured stop; their records
    /// stay on disk. A waiting retry whose hook was changed runs now, with
    /// the new hook. Variables named by `*_env` keys stay hidden from hooks
    /// after a reload that no longer names them: they are still in the
    /// daemon's environment.
    pub fn set_config(&self, config: &Config) {
        let mut new = Current::of(config);
        {
            let mut pending = lock(&self.pending);
            let old = lock(&self.current);
            let mut hidden: Vec<String> = old.hidden.to_vec();
            hidden.extend(
                new.hidden
                    .iter()
                    .filter(|n| !old.hidden.contains(n))
                    .cloned(),
            );
            new.hidden = hidden.into();
            pending.retain(|id, p| match new.instances.get(id) {
                None => {
                    tracing::info!(instance_id = %id, "the instance was removed from the config; its hook is no longer retried (the record stays in sync.state_dir and is delivered if the instance comes back)");
                    false
                }
                Some(inst) => {
                    if old.instances.get(id).is_none_or(|o| !same_hook(o, inst)) {
                        tracing::info!(instance = %inst.label(), instance_id = %id, service = %inst.service, "the instance's hook changed; retrying it now");
                        p.attempts = 0;
                        p.next = tokio::time::Instant::now();
                    }
                    true
                }
            });
        }
        *lock(&self.current) = new;
        self.wake.notify_one();
    }

    /// A change was recorded for the instance; `created`: no record was
    /// there before, so the record is this process's own.
    pub fn recorded(&self, instance_id: &str, created: bool) {
        if created {
            lock(&self.own).insert(instance_id.to_string());
        }
    }

    /// The instance as the current config has it.
    fn instance(&self, id: &str) -> Option<Instance> {
        lock(&self.current).instances.get(id).cloned()
    }

    /// Takes the instance's lock; hold it across "record + rename" and
    /// across [`Delivery::deliver`].
    pub async fn hold(&self, instance_id: &str) -> Held {
        let lock = Arc::clone(
            lock(&self.locks)
                .entry(instance_id.to_string())
                .or_default(),
        );
        Held {
            guard: Some(lock.lock_owned().await),
            instance_id: instance_id.to_string(),
            locks: Arc::clone(&self.locks),
        }
    }

    /// Whether a failed delivery of this instance waits for a retry time
    /// still ahead.
    pub fn waiting(&self, instance_id: &str) -> bool {
        lock(&self.pending)
            .get(instance_id)
            .is_some_and(|p| p.next > tokio::time::Instant::now())
    }

    /// Runs the hook the ledger says `inst` is owed, if any, and clears the
    /// record when it succeeded. `None`: nothing was owed. `seen`: what a
    /// round just read or wrote at some paths, so that the record is
    /// corrected against it rather than by reading those files again.
    pub async fn deliver(
        &self,
        inst: &Instance,
        _held: &Held,
        seen: Vec<(PathBuf, Observation)>,
    ) -> Option<Result<(), HookError>> {
        let name = inst.label().to_string();
        let ledger = self.ledger.clone();
        let inst_c = inst.clone();
        let owed = tokio::task::spawn_blocking(move || prepare(&ledger, &inst_c, &seen))
            .await
            .unwrap_or_else(|e| Err(format!("hook record task failed: {e}")));
        let owed = match owed {
            Ok(Some(o)) => o,
            Ok(None) => return self.nothing_owed(inst, Ok(())),
            Err(msg) => return self.nothing_owed(inst, Err(msg)),
        };
        let call = HookCall {
            instance_id: inst.id.clone(),
            instance_name: name.clone(),
            service: inst.service.name(),
            changed: owed.files,
            reason: if lock(&self.own).contains(&inst.id) {
                owed.reason
            } else {
                HookReason::RestoredAfterCrash
            },
        };
        let hidden = Arc::clone(&lock(&self.current).hidden);
        crate::failpoint::hit("before-hook");
        match run_action(inst, &call, &hidden).await {
            Ok(()) => {
                crate::failpoint::hit("after-hook");
                let ledger = self.ledger.clone();
                let id = inst.id.clone();
                let cleared = tokio::task::spawn_blocking(move || ledger.clear(&id)).await;
                match cleared {
                    Ok(Err(e)) => {
                        tracing::error!(instance = %name, instance_id = %inst.id, service = %inst.service, "hook succeeded but {e}; it will run again");
                    }
                    _ => {
                        lock(&self.own).remove(&inst.id);
                    }
                }
                self.forget(&inst.id);
                tracing::info!(instance = %name, instance_id = %inst.id, service = %inst.service, "hook succeeded");
                Some(Ok(()))
            }
            Err(e) => {
                self.failed(inst, &e);
                Some(Err(e))
            }
        }
    }

    /// What [`Delivery::deliver`] says when it runs no hook: nothing is owed
    /// (and nothing is left to retry), or the record could not be read or
    /// changed (retried like a failed hook). Also the answer for what
    /// [`drop_unwanted`] did for an instance without a hook.
    pub fn nothing_owed(
        &self,
        inst: &Instance,
        dropped: Result<(), String>,
    ) -> Option<Result<(), HookError>> {
        match dropped {
            Ok(()) => {
                self.forget(&inst.id);
                lock(&self.own).remove(&inst.id);
                None
            }
            Err(msg) => {
                let e = HookError::Ledger(msg);
                self.failed(inst, &e);
                Some(Err(e))
            }
        }
    }

    fn forget(&self, id: &str) {
        lock(&self.pending).remove(id);
    }

    fn failed(&self, inst: &Instance, e: &HookError) {
        let (max_backoff, configured) = {
            let current = lock(&self.current);
            (
                current.max_backoff,
                current.instances.contains_key(&inst.id),
            )
        };
        if !configured {
            // Removed by a reload while this run was under way.
            self.forget(&inst.id);
            tracing::warn!(
                instance = %inst.label(),
                instance_id = %inst.id, service = %inst.service,
                reason = "hook",
                "hook failed: {e}; the instance is no longer configured, so it is not retried (its record stays in sync.state_dir)"
            );
            return;
        }
        let delay = {
            let mut pending = lock(&self.pending);
            let p = pending.entry(inst.id.clone()).or_insert_with(|| Pending {
                attempts: 0,
                next: tokio::time::Instant::now(),
            });
            p.attempts += 1;
            let delay = retry_delay(p.attempts, max_backoff, fastrand::f64());
            p.next = tokio::time::Instant::now() + delay;
            delay
        };
        self.wake.notify_one();
        let next = humantime::format_duration(Duration::from_millis(delay.as_millis() as u64));
        tracing::warn!(
            instance = %inst.label(),
            instance_id = %inst.id, service = %inst.service,
            reason = "hook",
            "hook failed: {e}; the hook stays owed, next attempt in {next}"
        );
    }
}

/// Reads and corrects the instance's record, against `seen` where it says
/// what is at a path, else against the disk. Blocking.
fn prepare(
    ledger: &Ledger,
    inst: &Instance,
    seen: &[(PathBuf, Observation)],
) -> Result<Option<Owed>, String> {
    if !inst.has_hook() {
        return drop_unwanted(ledger, inst).map(|()| None);
    }
    let owed = match ledger.load_or_rebuild(inst) {
        Ok(Some(o)) => o,
        Ok(None) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let fixed = ledger::reconcile(owed.clone(), |path| {
        match seen.iter().find(|(p, _)| p == path) {
            Some((_, o)) => o.clone(),
            None => ledger::disk_state(inst, path),
        }
    });
    if fixed.as_ref() != Some(&owed) {
        ledger
            .put(&inst.id, fixed.as_ref())
            .map_err(|e| e.to_string())?;
    }
    Ok(fixed)
}

/// For an instance with no hook configured: drops the record of one it was
/// owed when it had one (before a reload, or in an earlier run). Blocking.
pub fn drop_unwanted(ledger: &Ledger, inst: &Instance) -> Result<(), String> {
    if ledger.exists(&inst.id) {
        tracing::info!(instance = %inst.label(), instance_id = %inst.id, service = %inst.service, "no hook is configured any more; dropping the hook it was owed");
        ledger.clear(&inst.id).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Retries failed deliveries until they succeed, each on its own backoff,
/// each with the instance as the current config has it, and tells
/// `delivered` how each retry ended (the daemon makes it an event of its
/// control loop, which counts it in the metrics).
/// Runs until dropped; the daemon spawns it once.
pub async fn retry_owed(
    delivery: Arc<Delivery>,
    mut delivered: impl FnMut(&Instance, &Result<(), HookError>),
) {
    loop {
        let wake = delivery.wake.notified();
        let next = lock(&delivery.pending)
            .iter()
            .min_by_key(|(_, p)| p.next)
            .map(|(id, p)| (id.clone(), p.next));
        let Some((id, at)) = next else {
            wake.await;
            continue;
        };
        if at > tokio::time::Instant::now() {
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = wake => {}
            }
            continue;
        }
        let held = delivery.hold(&id).await;
        // A round may have delivered (or failed anew) while we waited.
        let due = lock(&delivery.pending)
            .get(&id)
            .filter(|p| p.next <= tokio::time::Instant::now())
            .map(|p| p.attempts);
        let Some(attempts) = due else { continue };
        let Some(inst) = delivery.instance(&id) else {
            // Removed by a reload that raced this turn.
            delivery.forget(&id);
            continue;
        };
        tracing::info!(instance = %inst.label(), instance_id = %inst.id, service = %inst.service, attempt = attempts + 1, "running the owed hook again");
        if let Some(result) = delivery.deliver(&inst, &held, Vec::new()).await {
            delivered(&inst, &result);
        }
    }
}
