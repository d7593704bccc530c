//! The daemon in process, in paused time: [`run_with`] on a recording
//! notifier, a stand-in round that writes a fixed certificate, and events
//! the test sends. Reload, restore, readiness and `READY=1`/`STATUS=` are
//! checked by what the notifier heard, what the rounds were given and what
//! is on disk, never by log lines.
//!
//! Some 570 lines: one harness and the scenarios it drives, which
//! read best together.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::*;
use crate::certcheck::sha256;
use crate::config::Instance;
use crate::hooks::Delivery;
use crate::metrics::HookResult;
use crate::reload::Changes;
use crate::sync::{FileOutcome, FileReport, Report};

const CERT: &[u8] = include_bytes!("../../tests/data/cert-a.pem");

/// What systemd would have heard.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Note {
    Ready(String),
    Status(String),
    Reloading,
    Stopping,
    Watchdog,
}

struct Recorder(mpsc::UnboundedSender<Note>);

impl Notifier for Recorder {
    fn ready(&self, s: &str) {
        let _ = self.0.send(Note::Ready(s.into()));
    }
    fn status(&self, s: &str) {
        let _ = self.0.send(Note::Status(s.into()));
    }
    fn reloading(&self) {
        let _ = self.0.send(Note::Reloading);
    }
    fn stopping(&self) {
        let _ = self.0.send(Note::Stopping);
    }
    fn watchdog(&self) {
        let _ = self.0.send(Note::Watchdog);
    }
}

/// How the stand-in round treats an instance.
#[derive(Default)]
struct Script {
    /// Rounds of these instances wait until the test releases them.
    gated: Mutex<Vec<(String, Arc<Notify>)>>,
    /// What the stand-in writes; a valid certificate unless set.
    body: Mutex<Option<Vec<u8>>>,
}

/// A round as the test saw it: which instance, with which settings, when.
#[derive(Debug, Clone)]
struct Round {
    inst: Instance,
    at: Duration,
}

/// A stand-in for [`Syncer::sync`]: writes the script's body to every
/// output of the instance and reports it replaced, with the PEM held.
fn stand_in(script: Arc<Script>, rounds: mpsc::UnboundedSender<Round>) -> SyncFn {
    let t0 = Instant::now();
    Arc::new(move |_syncer, inst: Instance| {
        let (script, rounds) = (Arc::clone(&script), rounds.clone());
        Box::pin(async move {
            let gate = script
                .gated
                .lock()
                .unwrap()
                .iter()
                .find(|(id, _)| *id == inst.id)
                .map(|g| Arc::clone(&g.1));
            if let Some(gate) = gate {
                gate.notified().await;
            }
            let body = script.body.lock().unwrap().clone().unwrap_or(CERT.to_vec());
            let paths: Vec<_> = inst
                .outputs
                .iter()
                .map(|o| (o.category, o.path.clone()))
                .collect();
            let b = body.clone();
            let files = tokio::task::spawn_blocking(move || {
                paths
                    .into_iter()
                    .map(|(category, path)| {
                        std::fs::write(&path, &b).unwrap();
                        FileReport {
                            category,
                            output: category.as_str(),
                            path,
                            outcome: FileOutcome::Replaced {
                                old: None,
                                new: sha256(&b),
                            },
                            pem: Some((b.clone(), sha256(&b), Default::default())),
                            seen: None,
                        }
                    })
                    .collect()
            })
            .await
            .unwrap();
            let _ = rounds.send(Round {
                inst,
                at: t0.elapsed(),
            });
            Report {
                files,
                ..Report::default()
            }
        })
    })
}

fn config_text(dir: &Path, instances: &[(&str, &str)], extra: &str) -> String {
    let mut s = format!(
        "[cloud]\nregion = \"cn-north-4\"\nproject_id = \"p1\"\n[auth]\nmethod = \"token\"\ntoken = \"t\"\n\
         [sync]\ninterval = \"1h\"\njitter = \"0s\"\nstate_dir = \"{}\"\n{extra}\n",
        dir.join("state").display()
    );
    for (id, file) in instances {
        s.push_str(&format!(
            "[[instances]]\nid = \"{id}\"\ninternational = \"{}\"\n",
            dir.join(file).display()
        ));
    }
    s
}

/// Whether a round at `at` is the one `sync.interval` (1 h, no jitter)
/// after the first, which ran at start.
fn an_interval_after_start(at: Duration) -> bool {
    at >= Duration::from_secs(3600) && at < Duration::from_secs(3601)
}

/// A running daemon as the test drives it. Dropping it stops the daemon.
struct Harness {
    dir: PathBuf,
    config_path: PathBuf,
    events: mpsc::UnboundedSender<Event>,
    notes: mpsc::UnboundedReceiver<Note>,
    rounds: mpsc::UnboundedReceiver<Round>,
    script: Arc<Script>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

const WAIT: Duration = Duration::from_secs(7200);

impl Harness {
    /// The next message to systemd other than `WATCHDOG=1`.
    async fn note(&mut self) -> Note {
        loop {
            let n = tokio::time::timeout(WAIT, self.notes.recv())
                .await
                .expect("a message to systemd")
                .unwrap();
            if n != Note::Watchdog {
                return n;
            }
        }
    }

    /// The next `READY=1`'s status line, past any `STATUS=`.
    async fn ready(&mut self) -> String {
        loop {
            match self.note().await {
                Note::Ready(line) => return line,
                Note::Status(_) => {}
                other => panic!("{other:?} before READY=1"),
            }
        }
    }

    async fn round(&mut self) -> Round {
        tokio::time::timeout(WAIT, self.rounds.recv())
            .await
            .expect("a round")
            .unwrap()
    }

    fn write_config(&self, text: &str) {
        std::fs::write(&self.config_path, text).unwrap();
    }

    fn out(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

/// Runs the daemon on `config` while `body` drives it.
async fn with_daemon<F, Fut>(instances: &[(&str, &str)], script: Script, body: F)
where
    F: FnOnce(Harness) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    with_daemon_sweeping(instances, script, None, body).await;
}

/// [`with_daemon`], with the loop's own sweep every `sweep`.
async fn with_daemon_sweeping<F, Fut>(
    instances: &[(&str, &str)],
    script: Script,
    sweep: Option<Duration>,
    body: F,
) where
    F: FnOnce(Harness) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let config_path = dir.join("config.toml");
    std::fs::write(&config_path, config_text(&dir, instances, "")).unwrap();
    let crate::config::Loaded { config, bytes } = crate::config::load_async(config_path.clone())
        .await
        .unwrap();
    let delivery = Arc::new(Delivery::new(&config));
    let syncer = Arc::new(Syncer::new(&config, false, delivery, Default::default()).unwrap());
    let (notes_tx, notes) = mpsc::unbounded_channel();
    let (rounds_tx, rounds) = mpsc::unbounded_channel();
    let script = Arc::new(script);
    let sources = Sources {
        sweep,
        ..Sources::manual()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let h = Harness {
        dir,
        config_path: config_path.clone(),
        events: sources.sender.clone(),
        notes,
        rounds,
        script: Arc::clone(&script),
        _stop: stop,
    };
    let deps = Deps {
        config_path,
        config,
        config_bytes: bytes,
        syncer,
        sync: stand_in(script, rounds_tx),
        notifier: Arc::new(Recorder(notes_tx)),
        listener: None,
        watchdog: Some(Duration::from_secs(20)),
        sources,
    };
    let daemon = run_with(deps, async {
        let _ = stopped.await;
    });
    tokio::join!(daemon, body(h));
}

#[tokio::test(start_paused = true)]
async fn ready_only_once_every_instance_had_its_round_then_status_per_round() {
    let gate = Arc::new(Notify::new());
    let script = Script {
        gated: Mutex::new(vec![("b".into(), Arc::clone(&gate))]),
        ..Script::default()
    };
    with_daemon(&[("a", "a.crt"), ("b", "b.crt")], script, |mut h| async move {
        assert_eq!(h.round().await.inst.id, "a");
        // b's first round has not ended: a status, not READY=1.
        assert_eq!(
            h.note().await,
            Note::Status("2 instances: 1 in sync, 0 failing, 1 not synced yet; last: a: international created".into())
        );
        h.script.gated.lock().unwrap().clear();
        gate.notify_one();
        assert_eq!(h.round().await.inst.id, "b");
        assert_eq!(h.note().await, Note::Ready("2 instances: 2 in sync, 0 failing; last: b: international created".into()));
        assert_eq!(std::fs::read(h.out("a.crt")).unwrap(), CERT);
        // The next rounds, an interval later, say STATUS= only.
        let r = h.round().await;
        assert!(an_interval_after_start(r.at), "{r:?}");
        assert!(matches!(h.note().await, Note::Status(_)));
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn not_ready_while_a_file_on_disk_is_no_certificate() {
    let script = Script {
        body: Mutex::new(Some(b"not a certificate".to_vec())),
        ..Script::default()
    };
    with_daemon(&[("a", "a.crt")], script, |mut h| async move {
        h.round().await;
        assert!(
            matches!(h.note().await, Note::Status(_)),
            "the round went well, the file is not in place"
        );
        // The next round writes a certificate (SIGHUP syncs every instance).
        *h.script.body.lock().unwrap() = None;
        h.events.send(Event::Hangup).unwrap();
        h.round().await;
        assert!(matches!(h.note().await, Note::Ready(_)));
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_changed_config_is_applied_and_only_what_changed_syncs() {
    with_daemon(&[("a", "a.crt")], Script::default(), |mut h| async move {
        h.round().await;
        assert!(matches!(h.note().await, Note::Ready(_)));

        // An instance added: it starts; "a" keeps its schedule.
        let dir = h.dir.clone();
        h.write_config(&config_text(&dir, &[("a", "a.crt"), ("b", "b.crt")], ""));
        h.events.send(Event::File(h.config_path.clone())).unwrap();
        assert_eq!(h.note().await, Note::Reloading);
        let r = h.round().await;
        assert_eq!(r.inst.id, "b");
        assert!(r.at >= SETTLE && r.at < Duration::from_secs(1), "{r:?}");
        // READY=1 again after the reload, counting the new instance (b's
        // own STATUS= may come before or after it).
        let line = h.ready().await;
        assert!(line.starts_with("2 instances: "), "{line}");

        // "b" changed: it syncs now, with its new settings; "a" does not.
        h.write_config(&config_text(&dir, &[("a", "a.crt"), ("b", "b2.crt")], ""));
        h.events.send(Event::File(h.config_path.clone())).unwrap();
        let r = h.round().await;
        assert_eq!(r.inst.id, "b");
        assert_eq!(r.inst.outputs[0].path, h.out("b2.crt"));
        assert!(r.at < Duration::from_secs(1), "{r:?}");
        // The next round is a's, on its old schedule.
        let r = h.round().await;
        assert_eq!(r.inst.id, "a");
        assert!(an_interval_after_start(r.at), "{r:?}");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_broken_config_is_refused_and_the_running_one_keeps_working() {
    with_daemon(&[("a", "a.crt")], Script::default(), |mut h| async move {
        h.round().await;
        let Note::Ready(before) = h.note().await else {
            panic!("not ready")
        };
        let dir = h.dir.clone();
        h.write_config(&config_text(
            &dir,
            &[("a", "elsewhere.crt")],
            "interval = \"soon\"",
        ));
        h.events.send(Event::Hangup).unwrap();
        // Reloading, then ready again on the running config.
        assert_eq!(h.note().await, Note::Reloading);
        assert_eq!(h.note().await, Note::Ready(before));
        // The running config goes on: a's next round, on time, where it was.
        let r = h.round().await;
        assert_eq!(r.inst.id, "a");
        assert!(an_interval_after_start(r.at), "{r:?}");
        assert_eq!(r.inst.outputs[0].path, h.out("a.crt"));
        assert!(!h.out("elsewhere.crt").exists());
    })
    .await;
}

/// Polls (in paused time) until `f` holds.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

#[tokio::test(start_paused = true)]
async fn an_altered_or_deleted_output_is_restored_from_the_held_bytes_without_a_round() {
    with_daemon(&[("a", "a.crt")], Script::default(), |mut h| async move {
        h.round().await;
        assert!(matches!(h.note().await, Note::Ready(_)));
        let out = h.out("a.crt");

        std::fs::write(&out, b"tampered").unwrap();
        h.events.send(Event::File(out.clone())).unwrap();
        eventually("restored", || std::fs::read(&out).unwrap() == CERT).await;

        std::fs::remove_file(&out).unwrap();
        h.events.send(Event::File(h.dir.clone())).unwrap();
        eventually("re-created", || {
            std::fs::read(&out).is_ok_and(|b| b == CERT)
        })
        .await;

        // A restore is no round.
        assert!(h.rounds.try_recv().is_err());
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn the_sweep_restores_what_no_event_reported() {
    with_daemon(&[("a", "a.crt")], Script::default(), |mut h| async move {
        h.round().await;
        let out = h.out("a.crt");
        std::fs::remove_file(&out).unwrap();
        h.events.send(Event::Sweep).unwrap();
        eventually("re-created", || {
            std::fs::read(&out).is_ok_and(|b| b == CERT)
        })
        .await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn the_loop_sweeps_on_its_own_timer() {
    with_daemon_sweeping(
        &[("a", "a.crt")],
        Script::default(),
        Some(SWEEP),
        |mut h| async move {
            h.round().await;
            // What follows the round's end is done; then no event reports the deletion.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let out = h.out("a.crt");
            std::fs::remove_file(&out).unwrap();
            tokio::time::sleep(SWEEP).await;
            eventually("re-created", || {
                std::fs::read(&out).is_ok_and(|b| b == CERT)
            })
            .await;
        },
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_hook_retry_is_counted_like_a_rounds_run_and_not_for_a_removed_instance() {
    with_daemon(&[("hook-retry", "h.crt")], Script::default(), |mut h| async move {
        h.round().await;
        // In order: when the last is counted, the others were handled.
        for (id, result) in [
            ("never-configured", HookResult::Ok),
            ("hook-retry", HookResult::Failed),
            ("hook-retry", HookResult::Ok),
        ] {
            h.events
                .send(Event::HookDelivered(id.into(), result))
                .unwrap();
        }
        let series = |labels: &str| {
            let text = metrics::global().encode();
            (text.lines())
                .find(|l| l.starts_with(labels))
                .map(|l| l[labels.len()..].trim().to_string())
        };
        eventually("the retries counted", || {
            series("dds_certsync_hook_runs_total{instance=\"hook-retry\",service=\"dds\",result=\"ok\"}")
                .is_some()
        })
        .await;
        for (labels, value) in [
            ("dds_certsync_hook_runs_total{instance=\"hook-retry\",service=\"dds\",result=\"ok\"}", "1"),
            ("dds_certsync_hook_runs_total{instance=\"hook-retry\",service=\"dds\",result=\"failed\"}", "1"),
            ("dds_certsync_sync_errors_total{instance=\"hook-retry\",service=\"dds\",reason=\"hook\"}", "1"),
        ] {
            assert_eq!(series(labels).as_deref(), Some(value), "{labels}");
        }
        assert!(!metrics::global().encode().contains("never-configured"));
    })
    .await;
}

/// A generation of `text`, as the daemon would build it.
async fn generation(dir: &Path, text: &str, delivery: Option<Arc<Delivery>>) -> Generation {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    let config = crate::config::load_async(path).await.unwrap().config;
    let delivery = delivery.unwrap_or_else(|| Arc::new(Delivery::new(&config)));
    let syncer = Arc::new(Syncer::new(&config, false, delivery, Default::default()).unwrap());
    Generation::new(config, syncer)
}

async fn prepared(
    current: &Generation,
    dir: &Path,
    text: &str,
    forced: bool,
) -> Option<transaction::Prepared> {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    let new = crate::config::load_async(path.clone())
        .await
        .unwrap()
        .config;
    let mut endpoints = Endpoints::start(None, Arc::new(Health::new(&current.config)));
    transaction::prepare(current, new, forced, &mut endpoints, &path)
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn prepare_builds_only_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = config_text(dir, &[("a", "a.crt"), ("b", "b.crt")], "");
    let current = generation(dir, &base, None).await;

    assert!(
        prepared(&current, dir, &base, false).await.is_none(),
        "nothing changed"
    );
    let p = prepared(&current, dir, &base, true)
        .await
        .expect("SIGHUP applies anyway");
    assert!(p.changes.is_empty() && Arc::ptr_eq(&p.next.syncer, &current.syncer));

    // An instance changed: the same client, the new instance table.
    let p = prepared(
        &current,
        dir,
        &config_text(dir, &[("a", "a.crt"), ("b", "b2.crt")], ""),
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        p.changes,
        Changes {
            changed: vec!["b".into()],
            ..Changes::default()
        }
    );
    assert!(Arc::ptr_eq(&p.next.syncer, &current.syncer));
    assert_eq!(p.next.instances["b"].outputs[0].path, dir.join("b2.crt"));
    assert!(p.listener.is_none());

    // New credentials: a new client, the same hook delivery.
    let p = prepared(
        &current,
        dir,
        &base.replace("token = \"t\"", "token = \"t2\""),
        false,
    )
    .await
    .unwrap();
    assert!(p.changes.client);
    assert!(!Arc::ptr_eq(&p.next.syncer, &current.syncer));
    assert!(Arc::ptr_eq(
        &p.next.syncer.delivery,
        &current.syncer.delivery
    ));
}

#[tokio::test(start_paused = true)]
async fn a_listener_that_cannot_be_bound_refuses_the_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = config_text(dir, &[("a", "a.crt")], "");
    let current = generation(dir, &base, None).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let text = format!("{base}[server]\nlisten = \"{addr}\"\n");
    let path = dir.join("config.toml");
    std::fs::write(&path, &text).unwrap();
    let new = crate::config::load_async(path.clone())
        .await
        .unwrap()
        .config;
    let mut endpoints = Endpoints::start(None, Arc::new(Health::new(&current.config)));
    let err = transaction::prepare(&current, new, false, &mut endpoints, &path)
        .await
        .err()
        .expect("refused");
    assert!(
        err.contains("server.listen") && err.contains(&addr.to_string()),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn stopping_is_said_at_shutdown() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let tmp = tempfile::tempdir().unwrap();
    let text = config_text(tmp.path(), &[("a", "a.crt")], "");
    let current = generation(tmp.path(), &text, None).await;
    let (rounds_tx, _rounds) = mpsc::unbounded_channel();
    let deps = Deps {
        config_path: tmp.path().join("config.toml"),
        config: current.config.clone(),
        config_bytes: text.into_bytes(),
        syncer: Arc::clone(&current.syncer),
        sync: stand_in(Arc::default(), rounds_tx),
        notifier: Arc::new(Recorder(tx)),
        listener: None,
        watchdog: None,
        sources: Sources::manual(),
    };
    run_with(deps, tokio::time::sleep(Duration::from_secs(10))).await;
    let mut notes = Vec::new();
    while let Ok(n) = rx.try_recv() {
        notes.push(n);
    }
    assert!(matches!(notes.first(), Some(Note::Ready(_))), "{notes:?}");
    assert_eq!(notes.last(), Some(&Note::Stopping), "{notes:?}");
}
