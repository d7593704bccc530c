//! Liveness and readiness: what `/healthz`, `/readyz`, systemd's READY=1 and
//! WATCHDOG=1, and the expiry warning are decided from.
//!
//! * **Alive** means the scheduler loop turned recently. The loop calls
//!   [`Health::tick`] on every turn (through the scheduler's
//!   [`crate::scheduler::Observer`]); a heartbeat task nudges it every
//!   [`heartbeat_period`] so that a loop sleeping until an hourly poll still
//!   proves itself. Cloud errors never make the daemon "dead".
//! * **Ready** means every configured output file is on disk, holds nothing
//!   but what its format holds (certificates, read with the same PEM model
//!   as a download), and none of them has expired. It is judged from the
//!   disk, not from the last round, so a failing poll does not take
//!   readiness away while the files are still good.
//!
//! The outputs and what was last seen of them are the outputs table
//! ([`Outputs`]), which [`Health`] holds for the endpoints and the daemon;
//! the judgement is its pure [`crate::outputs::readiness`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::Config;
use crate::outputs::{Outputs, Readiness, Row};

/// How long without a loop turn before the daemon counts as not alive.
pub const LIVENESS_WINDOW: Duration = Duration::from_secs(30);

/// How often the heartbeat nudges the loop: every 5 s, or a quarter of the
/// systemd watchdog timeout when that is shorter.
pub fn heartbeat_period(watchdog: Option<Duration>) -> Duration {
    let base = Duration::from_secs(5);
    match watchdog {
        Some(w) => (w / 4).clamp(Duration::from_millis(50), base),
        None => base,
    }
}

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Shared state behind the endpoints.
#[derive(Debug)]
pub struct Health {
    /// When the scheduler loop last turned.
    ticks: watch::Sender<Instant>,
    outputs: Arc<Outputs>,
}

impl Health {
    pub fn new(config: &Config) -> Health {
        Health {
            ticks: watch::Sender::new(Instant::now()),
            outputs: Arc::new(Outputs::new(config)),
        }
    }

    /// A new config took effect.
    pub fn set_config(&self, config: &Config) {
        self.outputs.lock().set_config(config);
    }

    /// The outputs table.
    pub fn outputs(&self) -> &Arc<Outputs> {
        &self.outputs
    }

    /// `sync.expiry_warning` as configured now.
    pub fn warning(&self) -> Duration {
        self.outputs.lock().warning()
    }

    /// The scheduler loop turned.
    pub fn tick(&self) {
        self.ticks.send_replace(Instant::now());
    }

    /// A receiver that sees every later tick.
    pub fn subscribe(&self) -> watch::Receiver<Instant> {
        self.ticks.subscribe()
    }

    /// Whether the loop turned within [`LIVENESS_WINDOW`].
    pub fn alive(&self) -> bool {
        self.ticks.borrow().elapsed() < LIVENESS_WINDOW
    }

    /// Looks at the files now (reading those that changed since they were
    /// last seen) and judges them. Blocking.
    pub fn assess(&self) -> (Vec<Row>, Readiness) {
        self.outputs.assess(unix_now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_follows_the_watchdog() {
        assert_eq!(heartbeat_period(None), Duration::from_secs(5));
        assert_eq!(
            heartbeat_period(Some(Duration::from_secs(300))),
            Duration::from_secs(5)
        );
        assert_eq!(
            heartbeat_period(Some(Duration::from_secs(2))),
            Duration::from_millis(500)
        );
        assert_eq!(
            heartbeat_period(Some(Duration::from_millis(1))),
            Duration::from_millis(50)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_lapses_without_ticks() {
        let cfg = crate::config::validate(
            crate::config::parse(
                "[cloud]\nregion = \"cn-north-4\"\nproject_id = \"p\"\n[auth]\nmethod = \"token\"\ntoken = \"t\"\n[[instances]]\nid = \"i\"\ninternational = \"/x/a.crt\"\n",
            )
            .unwrap(),
            std::path::Path::new("/"),
        )
        .unwrap();
        let h = Health::new(&cfg);
        let rx = h.subscribe();
        assert!(h.alive());
        tokio::time::advance(LIVENESS_WINDOW + Duration::from_secs(1)).await;
        assert!(!h.alive());
        h.tick();
        assert!(h.alive());
        assert!(rx.has_changed().unwrap());
        assert_eq!(
            h.outputs().lock().rows()[0].path,
            std::path::PathBuf::from("/x/a.crt")
        );
    }
}
