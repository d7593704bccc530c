//! `--once`: sync every instance, print one summary line each, and exit.
//!
//! Instances sync concurrently up to `sync.concurrency`, started in config
//! order as earlier rounds end, so memory is bounded by the concurrency, not
//! by the number of instances: a round's report is reduced to its summary
//! line as soon as it ends. A transient failure
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
    let concurrency = config.sync.concurrency.max(1);
    // What outlives an instance's round: its summary line, nothing else.
    let mut lines: Vec<Option<(bool, String)>> = vec![None; config.instances.len()];
    let mut queue = config.instances.iter().enumerate();
    let mut tasks = JoinSet::new();
    // At most `concurrency` rounds exist at once, started in config order as
    // earlier ones end: no task, report or copy of an instance waits in line.
    let mut start_next = |tasks: &mut JoinSet<(usize, bool, String)>| {
        let Some((i, inst)) = queue.next() else {
            return;
        };
        let syncer = Arc::clone(&syncer);
        let inst = inst.clone();
        tasks.spawn(async move {
            let report = with_retries(&syncer, &inst, timing, end).await;
            (i, report.ok(), report.summary())
        });
    };
    let collect = async {
        for _ in 0..concurrency {
            start_next(&mut tasks);
        }
        while let Some(joined) = tasks.join_next().await {
            if let Ok((i, ok, line)) = joined {
                lines[i] = Some((ok, line));
            }
            start_next(&mut tasks);
        }
    };
    let interrupted = tokio::select! {
        _ = tokio::time::timeout_at(end, collect) => false,
        _ = shutdown => true,
    };
    tasks.abort_all();

    let mut all_ok = true;
    for (inst, line) in config.instances.iter().zip(lines) {
        let (ok, text) = match line {
            Some(line) => line,
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
        // process past the deadline. One line per instance whatever the
        // reasons hold (a name a neighbour chose, bytes from the network):
        // control characters are escaped, as in the log.
        crate::logging::print_stdout(&format!(
            "{:<6} {} ({}): {}",
            if ok { "ok" } else { "FAILED" },
            inst.label(),
            who(inst),
            crate::logging::escape_controls(&text)
        ));
    }
    all_ok
}

/// How a summary line names the instance: its ID, after its service when
/// that is not DDS (`rds r-1`), so DDS lines read as they always have.
fn who(inst: &Instance) -> String {
    match inst.service {
        crate::cloud::Service::Dds => inst.id.clone(),
        s => format!("{s} {}", inst.id),
    }
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
            ..RoundResult::default()
        };
        let delay = scheduler::next_delay(result, attempt, &timing, fastrand::f64());
        if Instant::now() + delay >= end {
            return report;
        }
        tracing::info!(instance = %inst.label(), instance_id = %inst.id, service = %inst.service, attempt, "retrying in {}", humantime::format_duration(Duration::from_millis(delay.as_millis() as u64)));
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}
