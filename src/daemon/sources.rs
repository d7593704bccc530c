//! The control loop's one stream of events, and where they come from.
//!
//! The loop ([`super::control`]) reads one channel of [`Event`]s. Its sources
//! are given to it: the binary wires the real ones ([`Sources::system`]:
//! SIGHUP, a `notify` watcher over directories, a periodic sweep); the tests
//! make a [`Sources::manual`] and send events themselves. The daemon's own
//! rounds add [`Event::RoundEnded`], and its hook retries
//! [`Event::HookDelivered`], through the same channel.
//!
//! The periodic sweep is not sent through the channel: the loop keeps its
//! own timer ([`Sources::sweep`]), whose missed ticks collapse into one. A
//! task sending [`Event::Sweep`] every period would queue one per period
//! while the loop is busy (a reload waiting on a client build, a restore on
//! a stalled file system), and the loop would then sweep, reading every
//! output, once for each: without end, and without bound, if it never
//! comes back.
//!
//! Shutdown is not an event of this stream: it goes straight to the scheduler
//! (see [`super::run_with`]), so that a reload in progress (which may wait up
//! to 20 s for a client build) never holds up a SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use crate::metrics::HookResult;
use crate::service;
use crate::watch::Watcher;
use tokio::sync::mpsc;

use super::SWEEP;

/// What the control loop acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// SIGHUP: reload the config, and sync every instance now.
    Hangup,
    /// Something may have changed at or in this path (a watched directory's
    /// entry, or the directory). An empty path means "anything may have".
    File(PathBuf),
    /// A round of this instance ended and its writes are done.
    RoundEnded(String),
    /// A retry of this instance's owed hook ended, so (see
    /// [`crate::hooks::retry_owed`]); a round's own hook run is part of
    /// its report instead.
    HookDelivered(String, HookResult),
    /// The fallback check of the config and every output, for lost events.
    Sweep,
}

/// The control loop's event channel, the watcher whose directories it
/// keeps current (none when file watching is off or not available), and
/// the period of its sweep.
#[derive(Debug)]
pub struct Sources {
    pub sender: mpsc::UnboundedSender<Event>,
    pub events: mpsc::UnboundedReceiver<Event>,
    pub watcher: Option<Watcher>,
    /// The loop sweeps every this long (none: only on [`Event::Sweep`]).
    pub sweep: Option<Duration>,
}

impl Sources {
    /// A channel that carries only what is sent to it: no signals, no
    /// watcher, no sweep.
    pub fn manual() -> Sources {
        let (sender, events) = mpsc::unbounded_channel();
        Sources {
            sender,
            events,
            watcher: None,
            sweep: None,
        }
    }

    /// The real sources: SIGHUP and the file watcher, each forwarded by a
    /// small task that ends with the channel, and the sweep every [`SWEEP`].
    pub fn system() -> Sources {
        let mut s = Sources::manual();
        s.sweep = Some(SWEEP);
        if let Some(mut hup) = service::hangups() {
            let tx = s.sender.clone();
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    if tx.send(Event::Hangup).is_err() {
                        return;
                    }
                }
            });
        }
        match Watcher::new() {
            Ok((w, mut rx)) => {
                s.watcher = Some(w);
                let tx = s.sender.clone();
                tokio::spawn(async move {
                    while let Some(p) = rx.recv().await {
                        if tx.send(Event::File(p)).is_err() {
                            return;
                        }
                    }
                });
            }
            Err(e) => tracing::warn!(
                "cannot watch files ({e}); config changes need SIGHUP, and outputs are checked every {}",
                humantime::format_duration(SWEEP)
            ),
        }
        s
    }
}
