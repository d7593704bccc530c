//! `--once`: sync every instance, print one summary line each, and exit.
//!
//! Instances sync concurrently up to `sync.concurrency`. A transient failure
//! (network trouble, 429, 5xx) is retried with the daemon's backoff, and no
//! sooner than `Retry-After`, for up to [`ATTEMPTS`] attempts; the whole run
//! has a deadline, so an init container never hangs on a dead server.
//! Whatever is unfinished at the deadline counts as failed.
//!
//! The summary lines go to stdout through [`crate::logging::print_stdout`]:
//! written in order when stdout is read, and, when it is not (a full pipe),
//! waited for only by the bounded flush at exit.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::{Config, Instance};
use crate::scheduler::{self, RoundResult, Timing};
use crate::sync::{Report, Syncer};

/// Attempts per instance for transient failures.
pub const ATTEMPTS: u32 = 3;

/// Syncs everything once. Returns whether every instance succeeded.
pub async fn run(
    config: &Config,
    syncer: Arc<Syncer>,
    deadline: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) -> bool {
    let end = Instant::now() + deadline;
    let timing = Timing::from(&config.sync);
    let limit = Arc::new(tokio::sync::Semaphore::new(config.sync.concurrency));
    let mut tasks = JoinSet::new();
    for (i, inst) in config.instances.iter().enumerate() {
        let syncer = Arc::clone(&syncer);
        let inst = inst.clone();
        let limit = Arc::clone(&limit);
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            (i, with_retries(&syncer, &inst, timing, end).await)
        });
    }

    let mut reports: Vec<Option<Report>> = vec![None; config.instances.len()];
    let collect = async {
        while let Some(joined) = tasks.join_next().await {
            if let Ok((i, report)) = joined {
                reports[i] = Some(report);
            }
        }
    };
    let interrupted = tokio::select! {
        _ = tokio::time::timeout_at(end, collect) => false,
        _ = shutdown => true,
    };
    tasks.abort_all();

    let mut all_ok = true;
    for (inst, report) in config.instances.iter().zip(reports) {
        let (ok, text) = match report {
            Some(r) => (r.ok(), r.summary()),
            None if interrupted => (false, "interrupted before it finished".to_string()),
            None => (
                false,
                format!(
                    "did not finish within the deadline of {}",
                    humantime::format_duration(deadline)
                ),
            ),
        };
        all_ok &= ok;
        // Queued, not waited for: a stdout nobody reads must not hold the
        // process past the deadline.
        crate::logging::print_stdout(&format!(
            "{:<6} {} ({}): {}",
            if ok { "ok" } else { "FAILED" },
            inst.label(),
            inst.id,
            text
        ));
    }
    all_ok
}

async fn with_retries(
    syncer: &Arc<Syncer>,
    inst: &Instance,
    timing: Timing,
    end: Instant,
) -> Report {
    let mut attempt = 1;
    loop {
        let report = syncer.sync(inst).await;
        if report.ok() || !report.transient || attempt >= ATTEMPTS {
            return report;
        }
        let result = RoundResult {
            ok: false,
            retry_after: report.retry_after,
        };
        let delay = scheduler::next_delay(result, attempt, &timing, fastrand::f64());
        if Instant::now() + delay >= end {
            return report;
        }
        tracing::info!(instance = %inst.label(), instance_id = %inst.id, attempt, "retrying in {}", humantime::format_duration(Duration::from_millis(delay.as_millis() as u64)));
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}
