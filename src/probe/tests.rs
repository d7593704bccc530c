//! The probe loop in paused time, with a scripted [`Checker`]: when probes
//! run, what asks for a sync, and the bounds (concurrency, timeout, one in
//! flight per address, no hot loop).

use std::sync::Mutex as StdMutex;

use super::verdict::Refusal;
use super::*;

const EVERY: Duration = Duration::from_secs(60);
const TIMEOUT: Duration = Duration::from_secs(5);

fn addr(port: u16) -> ProbeAddr {
    ProbeAddr {
        host: "10.0.0.1".into(),
        port,
    }
}

fn target(id: &str, ports: &[u16]) -> Target {
    Target {
        id: id.into(),
        service: crate::cloud::Service::Dds,
        label: id.into(),
        ca_file: PathBuf::from(format!("/nonexistent/{id}.crt")),
        addresses: ports.iter().map(|p| addr(*p)).collect(),
        interval: EVERY,
    }
}

fn plan(targets: Vec<Target>, concurrency: usize) -> Plan {
    Plan {
        instances: targets.iter().map(|t| t.id.clone()).collect(),
        targets,
        concurrency,
        timeout: TIMEOUT,
    }
}

fn refused() -> Outcome {
    Outcome::Refused(Refusal {
        reason: "the server's chain does not verify".into(),
        issuer: "CN=new".into(),
        subjects: vec!["CN=old".into()],
    })
}

/// What the fake answers, and what it saw.
#[derive(Default)]
struct Fake {
    /// Per port: the outcome, and how long the check takes (`None`: forever).
    script: StdMutex<HashMap<u16, (Outcome, Option<Duration>)>>,
    calls: StdMutex<Vec<(Instant, u16)>>,
    in_flight: StdMutex<HashMap<u16, usize>>,
    max_per_addr: StdMutex<usize>,
    total: StdMutex<(usize, usize)>,
}

impl Fake {
    fn set(&self, port: u16, outcome: Outcome, takes: Option<Duration>) {
        self.script.lock().unwrap().insert(port, (outcome, takes));
    }

    fn calls(&self, port: u16) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, p)| *p == port)
            .count()
    }
}

/// Counts a check in flight for as long as it lives (dropped on timeout too).
struct InFlight(Arc<Fake>, u16);

impl InFlight {
    fn new(fake: Arc<Fake>, port: u16) -> InFlight {
        let n = {
            let mut m = fake.in_flight.lock().unwrap();
            let n = m.entry(port).or_default();
            *n += 1;
            *n
        };
        let mut max = fake.max_per_addr.lock().unwrap();
        *max = (*max).max(n);
        drop(max);
        let mut total = fake.total.lock().unwrap();
        total.0 += 1;
        total.1 = total.1.max(total.0);
        drop(total);
        InFlight(fake, port)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.in_flight.lock().unwrap().entry(self.1).or_default() -= 1;
        self.0.total.lock().unwrap().0 -= 1;
    }
}

struct Handle(Arc<Fake>);

impl Checker for Handle {
    fn check(&self, addr: &ProbeAddr, _ca_file: &Path) -> CheckFuture {
        let fake = Arc::clone(&self.0);
        let port = addr.port;
        Box::pin(async move {
            fake.calls.lock().unwrap().push((Instant::now(), port));
            let _counted = InFlight::new(Arc::clone(&fake), port);
            let (outcome, takes) = fake
                .script
                .lock()
                .unwrap()
                .get(&port)
                .cloned()
                .unwrap_or((Outcome::Verified, Some(Duration::ZERO)));
            match takes {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending::<()>().await,
            }
            outcome
        })
    }
}

struct Running {
    fake: Arc<Fake>,
    metrics: &'static Metrics,
    events: mpsc::UnboundedSender<Event>,
    commands: mpsc::Receiver<Command>,
}

fn start(plan: Plan) -> Running {
    let fake = Arc::new(Fake::default());
    let (events, rx) = mpsc::unbounded_channel();
    let (tx, commands) = mpsc::channel(16);
    // Each test its own registry, leaked: it lives as long as the loop.
    let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new()));
    tokio::spawn(run(
        plan,
        Arc::new(Handle(Arc::clone(&fake))),
        rx,
        tx,
        metrics,
    ));
    Running {
        fake,
        metrics,
        events,
        commands,
    }
}

impl Running {
    fn round_done(&self, id: &str) {
        self.events.send(Event::RoundDone(id.into())).unwrap();
    }

    fn syncs(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::SyncSoon(ids) => out.extend(ids),
                other => panic!("unexpected command {other:?}"),
            }
        }
        out
    }
}

async fn wait(d: Duration) {
    tokio::time::sleep(d).await;
}

#[tokio::test(start_paused = true)]
async fn probes_start_after_the_first_round_then_run_every_interval() {
    let mut r = start(plan(vec![target("p-sched", &[1])], 4));
    wait(EVERY * 3).await;
    assert_eq!(r.fake.calls(1), 0, "nothing before the first round");
    r.round_done("p-sched");
    wait(Duration::from_millis(1)).await;
    assert_eq!(r.fake.calls(1), 1, "at once after a round");
    wait(EVERY * 5 + Duration::from_millis(1)).await;
    assert_eq!(r.fake.calls(1), 6, "then every interval");
    r.round_done("p-sched");
    wait(Duration::from_millis(1)).await;
    assert_eq!(r.fake.calls(1), 7, "and after each round");
    let times: Vec<Instant> = r.fake.calls.lock().unwrap().iter().map(|c| c.0).collect();
    for w in times[..6].windows(2) {
        assert_eq!(w[1] - w[0], EVERY);
    }
    assert!(r.syncs().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_refused_chain_asks_for_a_sync_from_a_timer_probe_only() {
    let mut r = start(plan(vec![target("p-refuse", &[1, 2])], 4));
    r.fake.set(2, refused(), Some(Duration::from_millis(10)));
    r.round_done("p-refuse");
    wait(Duration::from_secs(1)).await;
    assert_eq!(r.fake.calls(2), 1);
    assert!(
        r.syncs().is_empty(),
        "a probe right after a round asks nothing"
    );
    let text = r.metrics.encode();
    assert!(
        text.contains(
            r#"dds_certsync_probe_ok{instance="p-refuse",service="dds",address="10.0.0.1:2"} 0"#
        ),
        "{text}"
    );
    assert!(text.contains(
        r#"dds_certsync_probe_ok{instance="p-refuse",service="dds",address="10.0.0.1:1"} 1"#
    ));

    wait(EVERY).await;
    assert_eq!(
        r.syncs(),
        vec!["p-refuse".to_string()],
        "one sync per failed timer probe"
    );
    // The daemon's round would follow; its probe asks nothing again.
    r.round_done("p-refuse");
    wait(Duration::from_secs(1)).await;
    assert!(r.syncs().is_empty());
    // Fixed: no more syncs, the gauge is back to 1.
    r.fake.set(2, Outcome::Verified, Some(Duration::ZERO));
    wait(EVERY * 3).await;
    assert!(r.syncs().is_empty());
    assert!(r.metrics.encode().contains(
        r#"dds_certsync_probe_ok{instance="p-refuse",service="dds",address="10.0.0.1:2"} 1"#
    ));
}

#[tokio::test(start_paused = true)]
async fn a_dead_address_is_a_zero_and_a_log_line_never_a_sync_or_a_hot_loop() {
    let mut r = start(plan(vec![target("p-dead", &[1])], 4));
    r.fake.set(
        1,
        Outcome::Unreachable("cannot connect: refused".into()),
        Some(Duration::ZERO),
    );
    r.round_done("p-dead");
    wait(EVERY * 10 + Duration::from_millis(1)).await;
    assert_eq!(
        r.fake.calls(1),
        11,
        "once after the round, then once per interval"
    );
    assert!(r.syncs().is_empty());
    assert!(r.metrics.encode().contains(
        r#"dds_certsync_probe_ok{instance="p-dead",service="dds",address="10.0.0.1:1"} 0"#
    ));
}

#[tokio::test(start_paused = true)]
async fn a_hanging_address_is_cut_at_the_timeout_and_tried_again_an_interval_later() {
    let mut r = start(plan(vec![target("p-hang", &[1])], 4));
    r.fake.set(1, Outcome::Verified, None);
    r.round_done("p-hang");
    wait(TIMEOUT + Duration::from_millis(1)).await;
    assert_eq!(*r.fake.in_flight.lock().unwrap().get(&1).unwrap(), 0, "cut");
    assert!(r.metrics.encode().contains(
        r#"dds_certsync_probe_ok{instance="p-hang",service="dds",address="10.0.0.1:1"} 0"#
    ));
    // The interval counts from the end of a probe: at 0, 65 s and 130 s.
    wait(EVERY * 3).await;
    let times: Vec<Instant> = r.fake.calls.lock().unwrap().iter().map(|c| c.0).collect();
    assert_eq!(times.len(), 3);
    for w in times.windows(2) {
        assert_eq!(w[1] - w[0], EVERY + TIMEOUT);
    }
    assert!(r.syncs().is_empty());
}

#[tokio::test(start_paused = true)]
async fn probes_are_bounded_by_concurrency_and_one_per_address() {
    // Two instances share address 1 (a misconfiguration, but bounded still).
    let targets = vec![
        target("p-bound-a", &[1, 2, 3]),
        target("p-bound-b", &[1, 4, 5]),
    ];
    let r = start(plan(targets, 2));
    for port in 1..=5 {
        r.fake
            .set(port, Outcome::Verified, Some(Duration::from_secs(2)));
    }
    r.round_done("p-bound-a");
    r.round_done("p-bound-b");
    // Rounds keep coming while probes run: each is one more probe after it.
    for _ in 0..3 {
        wait(Duration::from_millis(500)).await;
        r.round_done("p-bound-a");
    }
    wait(EVERY).await;
    assert_eq!(
        r.fake.total.lock().unwrap().1,
        2,
        "at most `concurrency` at once"
    );
    assert_eq!(
        *r.fake.max_per_addr.lock().unwrap(),
        1,
        "one in flight per address"
    );
    assert!(
        r.fake.calls(1) >= 3,
        "both instances probed the shared address"
    );
    // Three rounds during the first probe made one more probe, not three.
    assert_eq!(r.fake.calls(2), 2);
}

#[tokio::test(start_paused = true)]
async fn a_reload_adds_and_removes_probes_and_their_series() {
    let r = start(plan(vec![target("p-reload", &[1, 2])], 4));
    r.round_done("p-reload");
    wait(Duration::from_millis(1)).await;
    let series = r#"dds_certsync_probe_ok{instance="p-reload",service="dds",address="10.0.0.1:2"}"#;
    assert!(r.metrics.encode().contains(series));

    r.events
        .send(Event::Plan(plan(vec![target("p-reload", &[1])], 4)))
        .unwrap();
    wait(EVERY * 2).await;
    assert!(
        !r.metrics.encode().contains(series),
        "gone with its address"
    );
    assert_eq!(r.fake.calls(2), 1);
    assert_eq!(r.fake.calls(1), 3);

    // The instance loses its probe: nothing more.
    let mut none = plan(vec![], 4);
    none.instances = vec!["p-reload".into()];
    r.events.send(Event::Plan(none)).unwrap();
    wait(EVERY * 3).await;
    assert_eq!(r.fake.calls(1), 3);
    // It gains one back: probed at once, it has had a round.
    r.events
        .send(Event::Plan(plan(vec![target("p-reload", &[7])], 4)))
        .unwrap();
    wait(Duration::from_millis(1)).await;
    assert_eq!(r.fake.calls(7), 1);
    let dds = r#"dds_certsync_probe_ok{instance="p-reload",service="dds",address="10.0.0.1:7"}"#;
    assert!(r.metrics.encode().contains(dds));
    // It moves to another service: its series follows, the old one goes.
    let mut rds = target("p-reload", &[7]);
    rds.service = crate::cloud::Service::Rds;
    r.events.send(Event::Plan(plan(vec![rds], 4))).unwrap();
    wait(EVERY * 2).await;
    let text = r.metrics.encode();
    assert!(!text.contains(dds), "{text}");
    assert!(
        text.contains(
            r#"dds_certsync_probe_ok{instance="p-reload",service="rds",address="10.0.0.1:7"}"#
        ),
        "{text}"
    );
}
