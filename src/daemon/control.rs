//! The control loop: one task, one stream of [`Event`]s (see
//! [`super::sources`]), acted on one at a time.
//!
//! * SIGHUP reloads the config and syncs every instance;
//! * file events are gathered for [`SETTLE`]; then the config is compared by
//!   content (and reloaded if it changed), and the held outputs the events
//!   may concern are checked and restored (see [`super::restore`]);
//! * the end of a round checks that instance's outputs: a change made while
//!   its round held them is seen now;
//! * the end of a hook retry is counted in the metrics;
//! * the sweep (every [`super::SWEEP`], and at [`Event::Sweep`]) checks the
//!   config and every output, and re-arms the watches.
//!
//! The loop owns what only it changes: the config file's change tracker, the
//! running endpoints ([`Endpoints`]), the watched directories ([`WatchSet`]),
//! and the reload transaction ([`super::transaction`]).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config;
use crate::metrics::HookResult;
use crate::scheduler::{Command, sleep_until_opt};
use crate::watch::ContentTracker;

use super::endpoints::Endpoints;
use super::restore::{self, Look};
use super::state::Daemon;
use super::watching::WatchSet;
use super::{Event, SETTLE};

/// What the control loop owns.
pub(super) struct Control {
    pub(super) daemon: Arc<Daemon>,
    /// Commands to the scheduler.
    pub(super) scheduler: mpsc::Sender<Command>,
    /// The config file's content as last parsed: one change, one reload.
    pub(super) tracker: ContentTracker,
    /// The last failure to read the config file, so that it is logged once,
    /// not at every event and sweep.
    pub(super) read_error: Option<String>,
    pub(super) endpoints: Endpoints,
    pub(super) watch: WatchSet,
    /// Tells the probes of an applied reload.
    pub(super) probes: mpsc::UnboundedSender<crate::probe::Event>,
}

/// Runs the loop until the event stream ends, sweeping every `sweep` (if
/// set) besides each [`Event::Sweep`]. Ticks missed while the loop was busy
/// are one sweep, not one each.
pub(super) async fn control(
    mut ctl: Control,
    mut events: mpsc::UnboundedReceiver<Event>,
    sweep: Option<Duration>,
) {
    let mut sweeps = sweep.map(|period| {
        let mut t = tokio::time::interval_at(Instant::now() + period, period);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    ctl.rewatch(false).await;
    // An edit between the start-up load and the watches is seen now, not at
    // the next edit: the tracker holds what was parsed.
    ctl.config_maybe_changed().await;

    let mut pending: HashSet<PathBuf> = HashSet::new();
    let mut settle_at: Option<Instant> = None;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                None => return,
                Some(Event::Hangup) => {
                    tracing::info!(config = %ctl.daemon.config_path.display(), "SIGHUP received, reloading the config");
                    ctl.reload(true, None).await;
                }
                Some(Event::File(p)) => {
                    pending.insert(p);
                    settle_at.get_or_insert_with(|| Instant::now() + SETTLE);
                }
                Some(Event::RoundEnded(id)) => ctl.round_ended(&id).await,
                Some(Event::HookDelivered(id, result)) => ctl.hook_delivered(&id, result),
                Some(Event::Sweep) => ctl.sweep().await,
            },
            _ = sleep_until_opt(settle_at), if settle_at.is_some() => {
                settle_at = None;
                ctl.settled(std::mem::take(&mut pending)).await;
            }
            _ = tick_opt(&mut sweeps), if sweeps.is_some() => ctl.sweep().await,
        }
    }
}

/// The next tick of `timer`; never, without one.
async fn tick_opt(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

impl Control {
    /// File events settled: the config, then the held outputs they concern.
    async fn settled(&mut self, touched: HashSet<PathBuf>) {
        if self.watch.affects_config(&touched).await {
            self.config_maybe_changed().await;
        }
        let candidates = self.daemon.outputs.lock().candidates_for(&touched);
        if restore::heal(&self.daemon, candidates, Look::Stamp).await {
            // A restore may have re-created a deleted directory: watch the new one.
            self.rewatch(true).await;
        }
    }

    /// A round ended: its instance's outputs may have been changed while
    /// the round held them.
    async fn round_ended(&mut self, id: &str) {
        let generation = self.daemon.current();
        let dirs = (generation.instances.get(id).into_iter())
            .flat_map(|i| &i.outputs)
            .map(|o| crate::output::parent_dir(&o.path))
            .collect();
        self.watch.round_ended(&generation.config, dirs).await;
        let candidates = self.daemon.outputs.lock().candidates_of(id);
        if restore::heal(&self.daemon, candidates, Look::Stamp).await {
            self.rewatch(true).await;
        }
    }

    /// A retry of an owed hook ended: it counts as a round's run does. An
    /// instance a reload removed meanwhile is not counted.
    fn hook_delivered(&self, id: &str, result: HookResult) {
        let generation = self.daemon.current();
        if let Some(inst) = generation.instances.get(id) {
            let who = (inst.id.as_str(), inst.service);
            super::tally::record_hook(crate::metrics::global(), who, result);
        }
    }

    /// The fallback for lost events: everything.
    async fn sweep(&mut self) {
        self.rewatch(true).await;
        self.config_maybe_changed().await;
        let all = self.daemon.outputs.lock().all();
        if restore::heal(&self.daemon, all, Look::Read).await {
            self.rewatch(true).await;
        }
    }

    /// Watches what the current generation's config asks for.
    pub(super) async fn rewatch(&mut self, force: bool) {
        let generation = self.daemon.current();
        self.watch.refresh(&generation.config, force).await;
    }

    /// Reads the config file (off the runtime thread, bounded, refusing what
    /// is not a regular file) and reloads it if its content changed. A file
    /// that cannot be read is no change: the running config stays.
    async fn config_maybe_changed(&mut self) {
        let bytes = match config::read_async(self.daemon.config_path.clone()).await {
            Ok(b) => {
                self.read_error = None;
                b
            }
            Err(e) => {
                let text = e.to_string();
                if self.read_error.as_ref() != Some(&text) {
                    tracing::warn!("{text}; keeping the running config");
                    self.read_error = Some(text);
                }
                return;
            }
        };
        if self.tracker.update(Some(&bytes)) {
            tracing::info!(config = %self.daemon.config_path.display(), "the config file changed, reloading it");
            self.reload(false, Some(bytes)).await;
        }
    }
}
