//! Liveness and readiness: what `/healthz`, `/readyz`, systemd's READY=1 and
//! WATCHDOG=1, and the expiry warning are decided from.
//!
//! * **Alive** means the scheduler loop turned recently. The loop calls
//!   [`Health::tick`] on every turn (through the scheduler's
//!   [`crate::scheduler::Observer`]); a heartbeat task nudges it every
//!   [`heartbeat_period`] so that a loop sleeping until an hourly poll still
//!   proves itself. Cloud errors never make the daemon "dead".
//! * **Ready** means every configured output file is on disk, holds nothing
//!   but parseable certificates, and none of them has expired. It is judged
//!   from the disk, not from the last round, so a failing poll does not take
//!   readiness away while the files are still good.
//!
//! The judgement is the pure [`judge`]; [`inspect_outputs`] does the reading.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

use crate::certcheck;
use crate::config::{Category, Config, Instance};
use crate::output;

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

/// One configured output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub instance_id: String,
    pub category: Category,
    pub path: PathBuf,
}

/// The outputs of a config, in config order.
pub fn targets(config: &Config) -> Vec<Target> {
    config.instances.iter().flat_map(targets_of).collect()
}

/// The outputs of one instance.
pub fn targets_of(inst: &Instance) -> Vec<Target> {
    inst.outputs
        .iter()
        .map(|o| Target {
            instance_id: inst.id.clone(),
            category: o.category,
            path: o.path.clone(),
        })
        .collect()
}

/// What is on disk at an output path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnDisk {
    Missing,
    Unreadable(String),
    /// Present, but not (only) certificates.
    Invalid,
    /// Certificates; the earliest notAfter, in Unix seconds.
    Certs {
        not_after: i64,
    },
}

/// Reads one output file, never following a symlink and never blocking on
/// a FIFO or a device ([`output::read_current`]).
pub fn inspect(path: &Path) -> OnDisk {
    match output::read_current(path) {
        Ok(output::Existing::Missing) => OnDisk::Missing,
        Ok(output::Existing::Link) => OnDisk::Unreadable(
            "is a symbolic link, not a regular file (the next round replaces it)".into(),
        ),
        Err(e) => OnDisk::Unreadable(e.to_string()),
        Ok(output::Existing::File(bytes)) => match certcheck::inspect_pem(&bytes) {
            Some(certs) => OnDisk::Certs {
                not_after: certs.iter().map(|c| c.not_after).min().unwrap_or(0),
            },
            None => OnDisk::Invalid,
        },
    }
}

/// Reads every output. Blocking.
pub fn inspect_outputs(targets: &[Target]) -> Vec<(Target, OnDisk)> {
    targets
        .iter()
        .map(|t| (t.clone(), inspect(&t.path)))
        .collect()
}

/// The verdict on the files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Why the daemon is not ready, one short phrase per file; empty: ready.
    pub problems: Vec<String>,
    /// Files whose certificate expires within the warning window, or has
    /// expired.
    pub expiring: Vec<(Target, i64)>,
}

impl Verdict {
    pub fn ready(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Judges the files at Unix time `now`. Pure.
pub fn judge(files: &[(Target, OnDisk)], now: i64, warning: Duration) -> Verdict {
    let mut v = Verdict::default();
    let horizon = now.saturating_add(i64::try_from(warning.as_secs()).unwrap_or(i64::MAX));
    for (t, state) in files {
        let p = t.path.display();
        match state {
            OnDisk::Missing => v.problems.push(format!("{p} is missing")),
            OnDisk::Unreadable(e) => v.problems.push(format!("{p} is unreadable: {e}")),
            OnDisk::Invalid => v
                .problems
                .push(format!("{p} does not hold only PEM certificates")),
            OnDisk::Certs { not_after } if *not_after <= now => {
                v.problems.push(format!(
                    "{p} expired at {}",
                    certcheck::format_time(*not_after)
                ));
                // Expired is the last stage of expiring: an alert on
                // `cert_expiring` must not clear when it comes.
                v.expiring.push((t.clone(), *not_after));
            }
            OnDisk::Certs { not_after } => {
                if *not_after <= horizon {
                    v.expiring.push((t.clone(), *not_after));
                }
            }
        }
    }
    v
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
    view: RwLock<(Vec<Target>, Duration)>,
}

impl Health {
    pub fn new(config: &Config) -> Health {
        Health {
            ticks: watch::Sender::new(Instant::now()),
            view: RwLock::new((targets(config), config.sync.expiry_warning)),
        }
    }

    /// A new config took effect.
    pub fn set_config(&self, config: &Config) {
        *self.view.write().unwrap_or_else(|e| e.into_inner()) =
            (targets(config), config.sync.expiry_warning);
    }

    /// The outputs and the expiry warning window in effect.
    pub fn view(&self) -> (Vec<Target>, Duration) {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `sync.expiry_warning` as configured now.
    pub fn warning(&self) -> Duration {
        self.view.read().unwrap_or_else(|e| e.into_inner()).1
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

    /// Reads and judges the files now. Blocking.
    pub fn assess(&self) -> (Vec<(Target, OnDisk)>, Verdict) {
        let (targets, warning) = self.view();
        let files = inspect_outputs(&targets);
        let verdict = judge(&files, unix_now(), warning);
        (files, verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(p: &str) -> Target {
        Target {
            instance_id: "i".into(),
            category: Category::International,
            path: PathBuf::from(p),
        }
    }

    const DAY: i64 = 86400;

    #[test]
    fn every_file_must_be_present_valid_and_current() {
        let now = 1_000_000;
        let files = vec![
            (
                t("/ok"),
                OnDisk::Certs {
                    not_after: now + 90 * DAY,
                },
            ),
            (t("/gone"), OnDisk::Missing),
            (t("/junk"), OnDisk::Invalid),
            (t("/old"), OnDisk::Certs { not_after: now }),
            (t("/denied"), OnDisk::Unreadable("Permission denied".into())),
        ];
        let v = judge(&files, now, Duration::from_secs(30 * 86400));
        assert!(!v.ready());
        assert_eq!(v.problems.len(), 4, "{:?}", v.problems);
        assert!(v.problems[0].contains("/gone is missing"));
        assert!(v.problems[1].contains("/junk"));
        assert!(v.problems[2].contains("/old expired"));
        assert!(v.problems[3].contains("Permission denied"));
        assert_eq!(v.expiring, vec![(t("/old"), now)]);
        assert!(judge(&files[..1], now, Duration::ZERO).ready());
    }

    #[test]
    fn expiring_within_the_window_is_reported_but_still_ready() {
        let now = 1_000_000;
        let files = vec![
            (
                t("/soon"),
                OnDisk::Certs {
                    not_after: now + 10 * DAY,
                },
            ),
            (
                t("/later"),
                OnDisk::Certs {
                    not_after: now + 40 * DAY,
                },
            ),
        ];
        let v = judge(&files, now, Duration::from_secs(30 * 86400));
        assert!(v.ready());
        assert_eq!(v.expiring, vec![(t("/soon"), now + 10 * DAY)]);
    }

    #[test]
    fn an_expired_certificate_is_also_expiring() {
        let now = 1_000_000;
        let files = vec![
            (
                t("/old"),
                OnDisk::Certs {
                    not_after: now - DAY,
                },
            ),
            (t("/edge"), OnDisk::Certs { not_after: now }),
        ];
        let v = judge(&files, now, Duration::from_secs(30 * 86400));
        assert_eq!(v.problems.len(), 2, "{:?}", v.problems);
        assert_eq!(v.expiring, vec![(t("/old"), now - DAY), (t("/edge"), now)]);
        // Even with no warning window at all.
        assert_eq!(judge(&files, now, Duration::ZERO).expiring.len(), 2);
    }

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
            Path::new("/"),
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
        assert_eq!(h.view().0[0].path, PathBuf::from("/x/a.crt"));
    }
}
