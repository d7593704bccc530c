//! A round as the daemon runs it: the instance's file lock, the sync, and
//! everything that follows (`after_round`): metrics, the expiry warning, the
//! healer, systemd's `STATUS=` and readiness.

use std::sync::Arc;

use crate::config::Instance;
use crate::heal;
use crate::health;
use crate::metrics;
use crate::scheduler::{RoundFn, RoundResult};
use crate::server;
use crate::sync::Report;

use super::Event;
use super::state::{Daemon, lock};

pub(super) fn round_fn(daemon: Arc<Daemon>) -> RoundFn {
    Arc::new(move |key: String| {
        let daemon = Arc::clone(&daemon);
        // One generation for the whole round: the instance and the client
        // it is synced with come from the same config.
        let generation = daemon.current();
        let inst = generation.instances.get(&key).cloned();
        let syncer = Arc::clone(&generation.syncer);
        drop(generation);
        Box::pin(async move {
            let Some(inst) = inst else {
                return RoundResult {
                    ok: true,
                    retry_after: None,
                };
            };
            let files = daemon.file_lock(&inst.id).lock_owned().await;
            lock(&daemon.healer).begin_round(&inst.id);
            let report = (daemon.sync)(syncer, inst.clone()).await;
            let ok = report.ok();
            if ok {
                tracing::debug!(instance = %inst.label(), instance_id = %inst.id, "round ok: {}", report.summary());
            } else {
                tracing::warn!(instance = %inst.label(), instance_id = %inst.id, "round failed: {}", report.summary());
            }
            after_round(&daemon, &inst, &report).await;
            drop(files);
            // Now that the round's writes are done: check for changes made meanwhile.
            let _ = daemon.events.send(Event::RoundEnded(inst.id.clone()));
            RoundResult {
                ok,
                retry_after: report.retry_after,
            }
        })
    })
}

/// Everything that follows a round: metrics, expiry warning, the healer,
/// systemd status and readiness.
async fn after_round(daemon: &Arc<Daemon>, inst: &Instance, report: &Report) {
    super::tally::record_round(metrics::global(), &inst.id, report, health::unix_now());
    let keys = daemon.current().keys();
    // READY=1 is considered once every instance has had a round; from then
    // on until it is sent, each round checks every file.
    let check_ready = {
        let mut progress = lock(&daemon.progress);
        progress.record(&inst.id, inst.label(), report);
        !progress.ready_sent && progress.all_synced(&keys)
    };

    let (inst_c, dry_run) = (inst.clone(), daemon.dry_run);
    let mut held = if dry_run {
        Vec::new()
    } else {
        heal::verified_outputs(inst, report)
    };
    let h = Arc::clone(&daemon.health);
    let disk = tokio::task::spawn_blocking(move || {
        heal::capture_ownership(&mut held);
        let warning = h.warning();
        let files = health::inspect_outputs(&health::targets_of(&inst_c));
        let now = health::unix_now();
        let verdict = health::judge(&files, now, warning);
        server::update_file_gauges(metrics::global(), &files, &verdict);
        for (t, not_after) in &verdict.expiring {
            if *not_after <= now {
                tracing::error!(
                    instance = %inst_c.label(),
                    instance_id = %inst_c.id,
                    category = %t.category,
                    path = %t.path.display(),
                    not_after = %crate::certcheck::format_time(*not_after),
                    "the certificate on disk has expired; the cloud has not rotated it yet, or it cannot be fetched"
                );
                continue;
            }
            tracing::warn!(
                instance = %inst_c.label(),
                instance_id = %inst_c.id,
                category = %t.category,
                path = %t.path.display(),
                not_after = %crate::certcheck::format_time(*not_after),
                "the certificate on disk expires within sync.expiry_warning ({}); the cloud has not rotated it yet",
                humantime::format_duration(warning)
            );
        }
        let files_ready = check_ready && (dry_run || h.assess().1.ready());
        (held, files_ready)
    })
    .await;
    let (held, files_ready) = disk.unwrap_or_default();
    lock(&daemon.healer).end_round(&inst.id, held);

    let mut progress = lock(&daemon.progress);
    let line = progress.status_line(&keys);
    if files_ready && !progress.ready_sent {
        progress.ready_sent = true;
        tracing::info!("first round done and every file in place: ready");
        daemon.notifier.ready(&line);
    } else {
        daemon.notifier.status(&line);
    }
}
