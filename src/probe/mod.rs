//! `probe`: checks the `international` CA file on disk against the live
//! server, so that a server that moved to a new CA first ("server first")
//! is noticed within `probe_interval` instead of at the next poll.
//!
//! For each address of an instance's `probe` list, after each round and
//! every `probe_interval` ([`schedule`]): a TCP connection and a TLS
//! handshake that notes the server's chain and sends nothing else
//! ([`connect`]); the CA file **as written on disk** is read afresh through
//! [`readfile::read_regular`] (never from memory, never through a symlink),
//! and the chain is judged against it ([`verdict`]): signatures and dates,
//! not the hostname (DDS server certificates do not name the addresses
//! clients use; Huawei's own examples turn hostname checks off). Only
//! `international` is probed: no Rust TLS stack verifies SM2 chains.
//!
//! What follows a probe:
//! * `dds_certsync_probe_ok{instance,address}` is 1 or 0;
//! * a chain that does not verify is a warning naming the address, the
//!   server certificate's issuer and the subjects in the file; if the timer
//!   started the probe, the instance syncs at once ([`Command::SyncSoon`]:
//!   its timer is bypassed, its backoff and `Retry-After` are not);
//! * an address that cannot be reached is a warning and a 0, nothing more.
//!
//! `/readyz` never looks at probes: it is judged from the files.
//!
//! Bounds: at most `sync.concurrency` handshakes at once, each within
//! `sync.timeout` (connect, handshake and file read together), at most one
//! in flight per address, one probe at a time per instance, and never more
//! often than `probe_interval` plus once per round. No credentials exist
//! on this path: no client certificate, no request.

mod connect;
pub mod schedule;
#[cfg(test)]
mod tests;
pub mod verdict;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::cloud::Service;
use crate::config::{Category, Config, ProbeAddr};
use crate::metrics::Metrics;
use crate::readfile::{self, Links};
use crate::scheduler::{Command, sleep_until_opt};
use schedule::{Cause, Schedule, asks_sync};
use verdict::{FileRead, Outcome, judge, unix_time};

/// One probed instance, as the config says now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: String,
    /// Its service: the `service` label of its series.
    pub service: Service,
    pub label: String,
    /// The `international` output: the file clients read.
    pub ca_file: PathBuf,
    pub addresses: Vec<ProbeAddr>,
    pub interval: Duration,
}

/// What the probes need of a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The instances with `probe`.
    pub targets: Vec<Target>,
    /// Every instance's ID, probed or not (a round of any of them is news).
    pub instances: Vec<String>,
    /// `sync.concurrency`: handshakes at once, at most.
    pub concurrency: usize,
    /// `sync.timeout`: one probe of one address, at most.
    pub timeout: Duration,
}

impl Plan {
    pub fn of(config: &Config) -> Plan {
        let targets = config
            .instances
            .iter()
            .filter_map(|i| {
                let probe = i.probe.as_ref()?;
                let file = i
                    .outputs
                    .iter()
                    .find(|o| o.category == Category::International && o.truststore.is_none())?;
                Some(Target {
                    id: i.id.clone(),
                    service: i.service,
                    label: i.label().to_string(),
                    ca_file: file.path.clone(),
                    addresses: probe.addresses.clone(),
                    interval: probe.interval,
                })
            })
            .collect();
        Plan {
            targets,
            instances: config.instances.iter().map(|i| i.id.clone()).collect(),
            concurrency: config.sync.concurrency.max(1),
            timeout: config.sync.timeout,
        }
    }

    fn schedule_input(&self) -> Vec<(String, Option<Duration>)> {
        self.instances
            .iter()
            .map(|id| {
                let t = self.targets.iter().find(|t| &t.id == id);
                (id.clone(), t.map(|t| t.interval))
            })
            .collect()
    }

    /// Every (instance, service, address) probed: one `probe_ok` series each.
    fn series(&self) -> HashSet<(String, Service, ProbeAddr)> {
        (self.targets.iter())
            .flat_map(|t| (t.addresses.iter()).map(|a| (t.id.clone(), t.service, a.clone())))
            .collect()
    }
}

/// What the daemon tells the probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A round of this instance ended.
    RoundDone(String),
    /// A reload applied a new config.
    Plan(Plan),
}

/// A boxed probe result.
pub type CheckFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Probes one address against one file. [`Tls`] is the real one; tests
/// script outcomes.
pub trait Checker: Send + Sync + 'static {
    fn check(&self, addr: &ProbeAddr, ca_file: &Path) -> CheckFuture;
}

/// The real probe: a TLS handshake, then the file on disk.
#[derive(Debug, Default)]
pub struct Tls;

impl Checker for Tls {
    fn check(&self, addr: &ProbeAddr, ca_file: &Path) -> CheckFuture {
        let (addr, ca_file) = (addr.clone(), ca_file.to_path_buf());
        Box::pin(async move {
            let chain = match connect::fetch_chain(&addr).await {
                Ok(chain) => chain,
                Err(e) => return Outcome::Unreachable(e),
            };
            let file = read_ca_file(ca_file).await;
            judge(&chain, &file, unix_time(SystemTime::now()))
        })
    }
}

/// Reads the CA file as on disk, on the blocking pool: a regular file, not
/// through a symlink at its path (as outputs are read), at most
/// [`crate::certcheck::MAX_BODY`] bytes.
async fn read_ca_file(path: PathBuf) -> FileRead {
    let read = tokio::task::spawn_blocking(move || {
        readfile::read_regular(&path, crate::certcheck::MAX_BODY as u64, Links::Refuse)
    })
    .await;
    match read {
        Ok(Ok(Some(bytes))) => FileRead::Bytes(bytes),
        Ok(Ok(None)) => FileRead::Missing,
        Ok(Err(e)) => FileRead::Error(e.to_string()),
        Err(e) => FileRead::Error(e.to_string()),
    }
}

/// The results of one probe of one instance, in `probe` order.
type PassResult = (String, Cause, Vec<(ProbeAddr, Outcome)>);

/// The loop's state apart from the schedule.
struct Probes {
    plan: Plan,
    checker: Arc<dyn Checker>,
    metrics: &'static Metrics,
    semaphore: Arc<Semaphore>,
    /// One lock per address: at most one probe in flight to it.
    locks: HashMap<ProbeAddr, Arc<Mutex<()>>>,
    /// The last result per (instance, address), for recovery lines.
    last_ok: HashMap<(String, ProbeAddr), bool>,
}

/// Runs the probes until `events` closes. A probe that the timer started
/// and that found a chain the file does not verify sends
/// [`Command::SyncSoon`] on `commands`; every result sets its gauge in
/// `metrics`.
pub async fn run(
    plan: Plan,
    checker: Arc<dyn Checker>,
    mut events: mpsc::UnboundedReceiver<Event>,
    commands: mpsc::Sender<Command>,
    metrics: &'static Metrics,
) {
    let mut schedule = Schedule::default();
    schedule.set(&plan.schedule_input(), Instant::now());
    let mut p = Probes {
        semaphore: Arc::new(Semaphore::new(plan.concurrency)),
        plan,
        checker,
        metrics,
        locks: HashMap::new(),
        last_ok: HashMap::new(),
    };
    let mut passes: JoinSet<PassResult> = JoinSet::new();
    let mut running: HashMap<tokio::task::Id, String> = HashMap::new();
    loop {
        for (id, cause) in schedule.take_due(Instant::now()) {
            match p.pass(&id, cause) {
                Some(pass) => {
                    let handle = passes.spawn(pass);
                    running.insert(handle.id(), id);
                }
                None => schedule.finished(&id, Instant::now()),
            }
        }
        let next = schedule.next_due();
        tokio::select! {
            Some(joined) = passes.join_next_with_id(), if !passes.is_empty() => {
                let (task, result) = match joined {
                    Ok((task, result)) => (task, Some(result)),
                    Err(e) => (e.id(), None),
                };
                let Some(id) = running.remove(&task) else { continue };
                if let Some((_, cause, results)) = result
                    && p.report(&id, cause, &results)
                {
                    let _ = commands.send(Command::SyncSoon(vec![id.clone()])).await;
                }
                schedule.finished(&id, Instant::now());
            }
            event = events.recv() => match event {
                None => break,
                Some(Event::RoundDone(id)) => schedule.round_done(&id, Instant::now()),
                Some(Event::Plan(plan)) => {
                    schedule.set(&plan.schedule_input(), Instant::now());
                    p.replan(plan);
                }
            },
            _ = sleep_until_opt(next), if next.is_some() => {}
        }
    }
    passes.abort_all();
}

impl Probes {
    /// The probe of one instance, ready to spawn; `None` if it has no
    /// target any more.
    fn pass(&mut self, id: &str, cause: Cause) -> Option<impl Future<Output = PassResult> + use<>> {
        let target = self.plan.targets.iter().find(|t| t.id == id)?.clone();
        let (checker, semaphore, timeout) = (
            Arc::clone(&self.checker),
            Arc::clone(&self.semaphore),
            self.plan.timeout,
        );
        let locks: Vec<_> = target
            .addresses
            .iter()
            .map(|a| Arc::clone(self.locks.entry(a.clone()).or_default()))
            .collect();
        Some(async move {
            let mut set = JoinSet::new();
            for (n, (addr, lock)) in target.addresses.iter().cloned().zip(locks).enumerate() {
                let (checker, semaphore) = (Arc::clone(&checker), Arc::clone(&semaphore));
                let ca_file = target.ca_file.clone();
                set.spawn(async move {
                    let _one = lock.lock_owned().await;
                    let Ok(_permit) = semaphore.acquire_owned().await else {
                        return (n, addr, Outcome::Unreachable("shutting down".into()));
                    };
                    let outcome = tokio::time::timeout(timeout, checker.check(&addr, &ca_file))
                        .await
                        .unwrap_or_else(|_| {
                            Outcome::Unreachable(format!(
                                "no answer within sync.timeout ({})",
                                humantime::format_duration(timeout)
                            ))
                        });
                    (n, addr, outcome)
                });
            }
            let mut results: Vec<_> = set.join_all().await;
            results.sort_by_key(|(n, _, _)| *n);
            let results = results.into_iter().map(|(_, a, o)| (a, o)).collect();
            (target.id, cause, results)
        })
    }

    /// Metrics and log lines for a finished probe; whether it asks for a sync.
    fn report(&mut self, id: &str, cause: Cause, results: &[(ProbeAddr, Outcome)]) -> bool {
        let Some(target) = self.plan.targets.iter().find(|t| t.id == id) else {
            return false;
        };
        let outcomes: Vec<Outcome> = results.iter().map(|(_, o)| o.clone()).collect();
        let sync = asks_sync(cause, &outcomes);
        let next = humantime::format_duration(target.interval);
        for (addr, outcome) in results {
            if !target.addresses.contains(addr) {
                continue; // removed by a reload meanwhile
            }
            (self.metrics).set_probe((id, target.service), &addr.to_string(), outcome.ok());
            let before = self
                .last_ok
                .insert((id.to_string(), addr.clone()), outcome.ok());
            log_outcome(
                target,
                addr,
                outcome,
                before,
                sync,
                cause,
                &next.to_string(),
            );
        }
        sync
    }

    /// A reload: new targets and bounds; series of what is gone are removed.
    fn replan(&mut self, plan: Plan) {
        let keep = plan.series();
        for (id, service, addr) in self.plan.series().difference(&keep) {
            (self.metrics).forget_probe((id, *service), &addr.to_string());
        }
        let pairs: HashSet<(&str, &ProbeAddr)> =
            keep.iter().map(|(i, _, a)| (i.as_str(), a)).collect();
        self.last_ok
            .retain(|(i, a), _| pairs.contains(&(i.as_str(), a)));
        let addrs: HashSet<&ProbeAddr> = keep.iter().map(|(_, _, a)| a).collect();
        self.locks.retain(|a, _| addrs.contains(a));
        if plan.concurrency != self.plan.concurrency {
            self.semaphore = Arc::new(Semaphore::new(plan.concurrency));
        }
        self.plan = plan;
    }
}

/// The log line of one address's result: recoveries at info, failures at
/// warn (each probe, so at most once per `probe_interval` plus once per
/// round), successes at debug.
fn log_outcome(
    t: &Target,
    addr: &ProbeAddr,
    outcome: &Outcome,
    before: Option<bool>,
    sync: bool,
    cause: Cause,
    next: &str,
) {
    let file = t.ca_file.display();
    match outcome {
        Outcome::Verified if before == Some(false) => tracing::info!(
            instance = %t.label, instance_id = %t.id, address = %addr, file = %file,
            "probe: the server's chain verifies against the file again"
        ),
        Outcome::Verified => tracing::debug!(
            instance = %t.label, instance_id = %t.id, address = %addr, file = %file,
            "probe: the server's chain verifies against the file"
        ),
        Outcome::Refused(r) => {
            let action = match (sync, cause) {
                (true, _) => "syncing the instance now".to_string(),
                (false, Cause::Round) => format!(
                    "the round that just ended did not fix it (the link does not serve the server's CA yet?); the next probe in {next} syncs again if it still fails"
                ),
                (false, Cause::Timer) => format!("next probe in {next}"),
            };
            tracing::warn!(
                instance = %t.label, instance_id = %t.id, address = %addr, file = %file,
                server_issuer = %r.issuer,
                file_subjects = %if r.subjects.is_empty() { "(none)".to_string() } else { r.subjects.join("; ") },
                "probe: clients reading the file would fail: {}; {action}", r.reason
            );
        }
        Outcome::Unreachable(e) => tracing::warn!(
            instance = %t.label, instance_id = %t.id, address = %addr,
            "probe: cannot check the server: {e}; next try in {next}"
        ),
    }
}
