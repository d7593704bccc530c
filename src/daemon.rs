//! The daemon: the scheduler, fed by the config, stopped by signals.
//!
//! Each round of an instance is one [`Syncer::sync`]; its report is logged
//! and reduced to a [`RoundResult`] for the scheduler. SIGHUP re-reads the
//! config: a valid one replaces the running one and every instance syncs at
//! once; an invalid one is logged, naming the key, and ignored.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::{self, Config, Instance};
use crate::scheduler::{self, Command, Observer, RoundFn, RoundResult, Timing};
use crate::service;
use crate::sync::Syncer;

/// How long rounds in progress may take to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(700);

type Instances = Arc<RwLock<HashMap<String, Instance>>>;

fn timing(c: &Config) -> Timing {
    Timing {
        interval: c.sync.interval,
        jitter: c.sync.jitter,
        max_backoff: c.sync.max_backoff,
    }
}

fn index(c: &Config) -> HashMap<String, Instance> {
    c.instances
        .iter()
        .map(|i| (i.id.clone(), i.clone()))
        .collect()
}

/// Runs until SIGTERM or SIGINT.
pub async fn run(config_path: PathBuf, config: Config, syncer: Arc<Syncer>) {
    let instances: Instances = Arc::new(RwLock::new(index(&config)));
    let round = round_fn(Arc::clone(&syncer), Arc::clone(&instances));
    let (tx, rx) = mpsc::channel(8);
    let keys = config.instances.iter().map(|i| i.id.clone()).collect();
    tracing::info!(
        instances = config.instances.len(),
        interval = %humantime::format_duration(config.sync.interval),
        credentials = %syncer.client.credentials().describe(),
        "daemon started"
    );

    let reloader = reload_on_hangup(config_path, instances, tx);
    let mut observer = LogObserver;
    let setup = scheduler::Setup {
        keys,
        timing: timing(&config),
        concurrency: config.sync.concurrency,
        grace: SHUTDOWN_GRACE,
    };
    let sched = scheduler::run(setup, round, rx, &mut observer, service::shutdown_signal());
    tokio::select! {
        _ = sched => {}
        _ = reloader => {}
    }
    tracing::info!("stopped");
}

fn round_fn(syncer: Arc<Syncer>, instances: Instances) -> RoundFn {
    Arc::new(move |key: String| {
        let syncer = Arc::clone(&syncer);
        let inst = instances
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        Box::pin(async move {
            let Some(inst) = inst else {
                return RoundResult {
                    ok: true,
                    retry_after: None,
                };
            };
            let report = syncer.sync(&inst).await;
            let ok = report.ok();
            if ok {
                tracing::debug!(instance = inst.label(), instance_id = %inst.id, "round ok: {}", report.summary());
            } else {
                tracing::warn!(instance = inst.label(), instance_id = %inst.id, "round failed: {}", report.summary());
            }
            RoundResult {
                ok,
                retry_after: report.retry_after,
            }
        })
    })
}

async fn reload_on_hangup(path: PathBuf, instances: Instances, tx: mpsc::Sender<Command>) {
    let Some(mut hup) = service::hangups() else {
        return std::future::pending().await;
    };
    while hup.recv().await.is_some() {
        tracing::info!(config = %path.display(), "SIGHUP received, reloading the config");
        match config::load(&path) {
            Ok(new) => {
                let keys = new.instances.iter().map(|i| i.id.clone()).collect();
                *instances.write().unwrap_or_else(|e| e.into_inner()) = index(&new);
                let _ = tx
                    .send(Command::SetTiming(timing(&new), new.sync.concurrency))
                    .await;
                let _ = tx.send(Command::SetInstances(keys)).await;
                let _ = tx.send(Command::SyncAllNow).await;
                tracing::info!(instances = new.instances.len(), "config reloaded");
            }
            Err(e) => tracing::error!("reload refused, keeping the running config: {e}"),
        }
    }
    std::future::pending().await
}

struct LogObserver;

impl Observer for LogObserver {
    fn round_done(&mut self, key: &str, result: &RoundResult, next_in: Duration) {
        let next = humantime::format_duration(Duration::from_secs(next_in.as_secs().max(1)));
        if result.ok {
            tracing::debug!(instance_id = key, "next sync in {next}");
        } else {
            tracing::info!(instance_id = key, "retrying in {next}");
        }
    }
}
