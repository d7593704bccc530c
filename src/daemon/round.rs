//! A round as the daemon runs it: the instance's file lock, the sync, and
//! everything that follows (`after_round`): metrics, the expiry warning, the
//! outputs table, systemd's `STATUS=` and readiness.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Instance;
use crate::heal;
use crate::health;
use crate::metrics;
use crate::outputs;
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
                    ..RoundResult::default()
                };
            };
            let files = daemon.file_lock(&inst.id).lock_owned().await;
            daemon.outputs.lock().begin_round(&inst.id);
            let report = (daemon.sync)(syncer, inst.clone()).await;
            let ok = report.ok();
            if ok {
                tracing::debug!(instance = %inst.label(), instance_id = %inst.id, service = %inst.service, "round ok: {}", report.summary());
            } else {
                tracing::warn!(instance = %inst.label(), instance_id = %inst.id, service = %inst.service, "round failed: {}", report.summary());
            }
            after_round(&daemon, &inst, &report).await;
            drop(files);
            // Now that the round's writes are done: check for changes made meanwhile.
            let _ = daemon.events.send(Event::RoundEnded(inst.id.clone()));
            RoundResult {
                ok,
                retry_after: report.retry_after,
                due_within: report.due_within(),
            }
        })
    })
}

/// Everything that follows a round: metrics, expiry warning, the outputs
/// table, systemd status and readiness.
async fn after_round(daemon: &Arc<Daemon>, inst: &Instance, report: &Report) {
    super::tally::record_round(
        metrics::global(),
        (&inst.id, inst.service),
        report,
        health::unix_now(),
    );
    // READY=1 is considered once every instance has had a round; from then
    // on until it is sent, each round checks every file.
    let check_ready = {
        let mut progress = lock(&daemon.progress);
        progress.record(&inst.id, inst.label(), report);
        !progress.ready_sent && progress.all_synced()
    };

    // What the round saw and wrote goes into the table: it is what the
    // gauges, the expiry warning and readiness judge, without another read.
    let dry_run = daemon.dry_run;
    daemon
        .outputs
        .lock()
        .end_round(&inst.id, heal::round_ends(report, !dry_run));
    let (inst_c, h) = (inst.clone(), Arc::clone(&daemon.health));
    let looked: Vec<PathBuf> = (report.files.iter())
        .filter(|f| f.seen.is_some())
        .map(|f| f.path.clone())
        .collect();
    let files_ready = tokio::task::spawn_blocking(move || {
        let outputs = h.outputs();
        let mut rows = outputs.lock().rows_of(&inst_c.id);
        for row in rows.iter_mut().filter(|r| !looked.contains(&r.path)) {
            // The round did not get to its disk step (its API call failed).
            let seen = outputs::look(&row.path, &row.format, row.seen.as_ref());
            outputs
                .lock()
                .saw(&row.path, row.seen.as_ref(), seen.clone());
            row.seen = Some(seen);
        }
        let (now, warning) = (health::unix_now(), h.warning());
        let seen = rows.iter().filter_map(|r| Some((r, r.seen.as_ref()?)));
        let verdict = outputs::readiness(seen, now, warning);
        server::update_file_gauges(metrics::global(), &rows, &verdict);
        log_expiring(&inst_c, &verdict, now, warning);
        check_ready && (dry_run || h.assess().1.ready())
    })
    .await
    .unwrap_or_default();

    let mut progress = lock(&daemon.progress);
    let line = progress.status_line();
    if files_ready && !progress.ready_sent {
        progress.ready_sent = true;
        tracing::info!("first round done and every file in place: ready");
        daemon.notifier.ready(&line);
    } else {
        daemon.notifier.status(&line);
    }
}

/// Warns of the instance's files that expire within `warning`, and errs
/// about those expired.
fn log_expiring(inst: &Instance, verdict: &outputs::Readiness, now: i64, warning: Duration) {
    for e in &verdict.expiring {
        if e.not_after <= now {
            tracing::error!(
                instance = %inst.label(),
                instance_id = %inst.id, service = %inst.service,
                category = %e.category,
                path = %e.path.display(),
                not_after = %crate::certcheck::format_time(e.not_after),
                "the certificate on disk has expired; the cloud has not rotated it yet, or it cannot be fetched"
            );
            continue;
        }
        tracing::warn!(
            instance = %inst.label(),
            instance_id = %inst.id, service = %inst.service,
            category = %e.category,
            path = %e.path.display(),
            not_after = %crate::certcheck::format_time(e.not_after),
            "the certificate on disk expires within sync.expiry_warning ({}); the cloud has not rotated it yet",
            humantime::format_duration(warning)
        );
    }
}
