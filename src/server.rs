//! The HTTP endpoints, served when `[server] listen` is set: `/healthz`,
//! `/readyz` and `/metrics`. Plain HTTP/1.1 on hyper (already in the tree
//! through reqwest), GET and HEAD only, no request body read.
//!
//! Anything that can reach the port may hold connections open, so the
//! server accepts first and sheds load after, and a probe never waits
//! behind idle holders:
//!
//! * every connection is accepted at once (the accept loop never waits for
//!   a free slot);
//! * a connection that has not sent a complete request head within
//!   [`IDLE_TIMEOUT`] (2 s), before its first request or between keep-alive
//!   requests, is closed;
//! * beyond [`MAX_CONNECTIONS`] open connections, a new one gets
//!   [`OVERFLOW_TIMEOUT`] (0.5 s) to send its request and is closed after one
//!   answer; a probe sends at once and is served, a holder is let go quickly;
//! * beyond [`HARD_LIMIT`] (kept well below the usual file descriptor limit,
//!   which the daemon needs for its own work) a new connection is closed at
//!   once;
//! * no connection lives longer than [`MAX_LIFETIME`].
//!
//! * `/healthz`: 200 `ok` while the scheduler loop is alive, else 503.
//! * `/readyz`: 200 `ready` once every configured file is in place, holds
//!   only certificates and none has expired; else 503 with the reasons.
//! * `/metrics`: the registry of [`crate::metrics`], after refreshing the
//!   gauges that describe the files on disk.
//!
//! Judging the files reads every output, on the blocking pool. So that
//! requests cannot tie up that pool, one assessment runs at a time (single
//! flight, [`Assessor`]): requests that come while it runs wait for it and
//! share its answer, which is reused for [`ASSESSMENT_REUSE`] (1 s).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::health::Health;
use crate::metrics::{self, Metrics};
use crate::outputs::{Readiness, Row};

/// Open connections with the full [`IDLE_TIMEOUT`] and keep-alive, at most.
pub const MAX_CONNECTIONS: usize = 64;
/// Open connections at all, at most; a new one beyond this is closed at once.
pub const HARD_LIMIT: usize = 256;
/// How long a connection may go without a complete request head: before its
/// first request, and between keep-alive requests.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(2);
/// The same for a connection accepted beyond [`MAX_CONNECTIONS`], which is
/// also closed after its first answer.
pub const OVERFLOW_TIMEOUT: Duration = Duration::from_millis(500);
/// How long any connection may stay open.
pub const MAX_LIFETIME: Duration = Duration::from_secs(30);
/// How long one assessment of the files answers `/readyz` and `/metrics`.
pub const ASSESSMENT_REUSE: Duration = Duration::from_secs(1);

/// How a new connection is treated, given how many are open. Pure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// [`IDLE_TIMEOUT`], keep-alive.
    Normal,
    /// [`OVERFLOW_TIMEOUT`], one request.
    Overflow,
    /// Closed at once.
    Refuse,
}

/// Decides a new connection's [`Admission`] when `open` are open. Pure.
pub fn admit(open: usize) -> Admission {
    if open >= HARD_LIMIT {
        Admission::Refuse
    } else if open >= MAX_CONNECTIONS {
        Admission::Overflow
    } else {
        Admission::Normal
    }
}

/// Counts an open connection until dropped.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves until dropped.
pub async fn serve(listener: TcpListener, health: Arc<Health>) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(listen = %addr, "serving /healthz, /readyz and /metrics");
    }
    let open = Arc::new(AtomicUsize::new(0));
    let assessor = Arc::new(Assessor::new(health));
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors, most likely: the connections we
                // hold are bounded, and time out, so this passes.
                tracing::debug!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (timeout, keep_alive) = match admit(open.load(Ordering::Acquire)) {
            Admission::Normal => (IDLE_TIMEOUT, true),
            Admission::Overflow => (OVERFLOW_TIMEOUT, false),
            Admission::Refuse => {
                drop(tcp);
                continue;
            }
        };
        open.fetch_add(1, Ordering::AcqRel);
        let counted = Open(Arc::clone(&open));
        let assessor = Arc::clone(&assessor);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let assessor = Arc::clone(&assessor);
                async move { Ok::<_, Infallible>(handle(req, &assessor).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(timeout)
                .keep_alive(keep_alive)
                .serve_connection(TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(MAX_LIFETIME, conn).await;
            drop(counted);
        });
    }
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Health,
    Ready,
    Metrics,
    NotFound,
    MethodNotAllowed,
}

/// Routes a request. Pure.
pub fn route(method: &Method, path: &str) -> Route {
    let r = match path {
        "/healthz" => Route::Health,
        "/readyz" => Route::Ready,
        "/metrics" => Route::Metrics,
        _ => return Route::NotFound,
    };
    if method == Method::GET || method == Method::HEAD {
        r
    } else {
        Route::MethodNotAllowed
    }
}

/// The `/readyz` answer for a verdict. Pure.
pub fn readiness_response(v: &Readiness) -> (StatusCode, String) {
    if v.ready() {
        (StatusCode::OK, "ready\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", v.problems.join("; ")),
        )
    }
}

async fn handle<B>(req: Request<B>, assessor: &Assessor) -> Response<Full<Bytes>> {
    match route(req.method(), req.uri().path()) {
        Route::Health if assessor.health.alive() => text(StatusCode::OK, "ok\n".into()),
        Route::Health => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not alive: the scheduler has made no progress recently\n".into(),
        ),
        Route::Ready => {
            let verdict = assessor.verdict().await;
            let (status, body) = readiness_response(&verdict);
            text(status, body)
        }
        Route::Metrics => {
            let _ = assessor.verdict().await;
            metrics::global().log_lines_dropped(crate::logging::lines_dropped());
            let body = metrics::global().encode();
            respond(StatusCode::OK, metrics::CONTENT_TYPE, body)
        }
        Route::NotFound => text(
            StatusCode::NOT_FOUND,
            "not found; try /healthz, /readyz or /metrics\n".into(),
        ),
        Route::MethodNotAllowed => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
            r.headers_mut().insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static("GET, HEAD"),
            );
            r
        }
    }
}

/// Judges the files for the endpoints: one assessment at a time, its verdict
/// shared by the requests that waited for it and reused for
/// [`ASSESSMENT_REUSE`].
#[derive(Debug)]
pub struct Assessor {
    health: Arc<Health>,
    /// The last verdict and when its assessment started. The async lock is
    /// held across the assessment: that is the single flight.
    last: tokio::sync::Mutex<Option<(Instant, Readiness)>>,
    /// How many assessments have run.
    runs: AtomicU64,
}

impl Assessor {
    pub fn new(health: Arc<Health>) -> Self {
        Assessor {
            health,
            last: tokio::sync::Mutex::new(None),
            runs: AtomicU64::new(0),
        }
    }

    /// The verdict on the files, at most [`ASSESSMENT_REUSE`] old.
    pub async fn verdict(&self) -> Readiness {
        let mut last = self.last.lock().await;
        if let Some((at, v)) = last.as_ref()
            && at.elapsed() < ASSESSMENT_REUSE
        {
            return v.clone();
        }
        let at = Instant::now();
        self.runs.fetch_add(1, Ordering::Relaxed);
        let v = assess(&self.health).await;
        *last = Some((at, v.clone()));
        v
    }
}

/// Reads the files (on the blocking pool), refreshes their gauges, and
/// returns the verdict.
async fn assess(health: &Arc<Health>) -> Readiness {
    let h = Arc::clone(health);
    match tokio::task::spawn_blocking(move || {
        let (files, verdict) = h.assess();
        update_file_gauges(metrics::global(), &files, &verdict);
        verdict
    })
    .await
    {
        Ok(v) => v,
        Err(e) => Readiness {
            problems: vec![format!("cannot inspect the files: {e}")],
            expiring: Vec::new(),
        },
    }
}

/// Sets the per-file gauges from the outputs as last seen.
pub fn update_file_gauges(m: &Metrics, rows: &[Row], verdict: &Readiness) {
    for row in rows {
        let not_after = match &row.seen {
            Some(crate::outputs::Observation::File(f)) => match f.content {
                crate::outputs::Content::Certs { not_after } => Some(not_after),
                crate::outputs::Content::Invalid => None,
            },
            _ => None,
        };
        let expiring = verdict.expiring.iter().any(|e| e.path == row.path);
        m.set_file(row.who(), (row.category, row.output()), not_after, expiring);
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", body)
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(&Method::GET, "/healthz"), Route::Health);
        assert_eq!(route(&Method::HEAD, "/readyz"), Route::Ready);
        assert_eq!(route(&Method::GET, "/metrics"), Route::Metrics);
        assert_eq!(route(&Method::POST, "/metrics"), Route::MethodNotAllowed);
        assert_eq!(route(&Method::GET, "/"), Route::NotFound);
        assert_eq!(route(&Method::GET, "/metrics/"), Route::NotFound);
    }

    #[test]
    fn connections_beyond_the_cap_get_a_short_fuse_then_are_refused() {
        assert_eq!(admit(0), Admission::Normal);
        assert_eq!(admit(MAX_CONNECTIONS - 1), Admission::Normal);
        assert_eq!(admit(MAX_CONNECTIONS), Admission::Overflow);
        assert_eq!(admit(HARD_LIMIT - 1), Admission::Overflow);
        assert_eq!(admit(HARD_LIMIT), Admission::Refuse);
        assert!(OVERFLOW_TIMEOUT < IDLE_TIMEOUT && IDLE_TIMEOUT < MAX_LIFETIME);
    }

    #[test]
    fn readiness_names_the_problems() {
        let (s, b) = readiness_response(&Readiness::default());
        assert_eq!((s, b.as_str()), (StatusCode::OK, "ready\n"));
        let v = Readiness {
            problems: vec!["/a is missing".into(), "/b expired at x".into()],
            expiring: vec![],
        };
        let (s, b) = readiness_response(&v);
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(b, "not ready: /a is missing; /b expired at x\n");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_readiness_requests_share_one_assessment_and_see_changes_after_a_second() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("a.crt");
        let cfg = crate::config::validate(
            crate::config::parse(&format!(
                "[cloud]\nregion = \"cn-north-4\"\nproject_id = \"p\"\n[auth]\nmethod = \"token\"\ntoken = \"t\"\n[[instances]]\nid = \"i\"\ninternational = \"{}\"\n",
                out.display()
            ))
            .unwrap(),
            d.path(),
        )
        .unwrap();
        let assessor = Arc::new(Assessor::new(Arc::new(Health::new(&cfg))));
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..100 {
            let a = Arc::clone(&assessor);
            requests.spawn(async move { a.verdict().await });
        }
        for v in requests.join_all().await {
            assert!(v.problems[0].contains("is missing"), "{v:?}");
        }
        assert_eq!(assessor.runs.load(Ordering::Relaxed), 1);
        // A change within the reuse window is not seen yet...
        std::fs::write(&out, b"not a certificate").unwrap();
        let v = assessor.verdict().await;
        assert!(v.problems[0].contains("is missing"), "{v:?}");
        assert_eq!(assessor.runs.load(Ordering::Relaxed), 1);
        // ...and is after it.
        tokio::time::advance(ASSESSMENT_REUSE).await;
        let v = assessor.verdict().await;
        assert!(v.problems[0].contains("only PEM certificates"), "{v:?}");
        assert_eq!(assessor.runs.load(Ordering::Relaxed), 2);
    }
}
