//! Log setup: tracing to stderr, as text or JSON, filtered by `RUST_LOG`.
//!
//! Credentials never reach a log line: they live in [`crate::secret::Secret`]
//! and in header values marked sensitive, and no code formats either.
//!
//! Text lines are one event each, whatever the values hold: control
//! characters (C0, DEL, C1) in the message and in every field value are
//! written escaped (`\n`, `\r`, `\t`, `\x1b`, `\u{9b}`), so a certificate
//! subject, an API string or a hook's output cannot forge a line or drive a
//! terminal ([`escape_controls`]). JSON encodes them itself.
//!
//! Nothing waits for stderr. An event is formatted on the thread that logs it
//! and queued (at most [`QUEUE_LINES`] lines) for one writer thread, which
//! writes whatever lines are queued together in one system call, and after
//! writing lets a burst gather for a moment ([`LINGER`]) rather than being
//! woken for every line of a busy round; when the
//! queue is full because nobody reads the pipe (a stuck log shipper, a full
//! pipe), the line is dropped and counted, so a stalled log sink can stop
//! neither the sync, nor `--deadline`, nor SIGTERM. The count is logged once
//! lines get through again, and kept in total ([`lines_dropped`]), which
//! the daemon exports as `dds_certsync_log_lines_dropped_total`. [`flush`]
//! gives the queue a
//! bounded time to drain before the process exits.
//!
//! Panics are reported the same way: [`init`] replaces the default panic
//! hook, which writes to stderr itself and would block on a stalled one, by
//! one that queues the message (and, where a panic aborts, gives it a bounded
//! moment to get out).
//!
//! Stdout (the `--once` summary, `--check`'s line) goes through its own
//! queue and writer thread, [`print_stdout`]: never dropped, since those
//! lines are few and are the result, but never waited for either beyond the
//! bounded [`flush`], so a pipe nobody reads cannot hold the process past
//! `--deadline`.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, TrySendError, channel, sync_channel};
use std::thread::Thread;
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Lines waiting for stderr, at most; more are dropped and counted.
pub const QUEUE_LINES: usize = 1024;

/// The writer joins queued lines into one write up to about this size.
const BATCH_BYTES: usize = 64 * 1024;

/// How long a writer lets lines gather after writing all that were queued:
/// short beside a log line's use, long beside the microseconds between the
/// lines of a busy round. A burst faster than [`QUEUE_LINES`] lines in this
/// time would drop lines; a round logs a few thousand a second.
const LINGER: Duration = Duration::from_millis(1);

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable key=value lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Log lines dropped since the start.
static DROPPED_TOTAL: AtomicU64 = AtomicU64::new(0);

/// How many log lines were dropped since the start because stderr could not
/// take them.
pub fn lines_dropped() -> u64 {
    DROPPED_TOTAL.load(Ordering::Relaxed)
}

/// The filter `RUST_LOG` asks for: comma-separated `level` and
/// `target=level` directives (`debug`, `dds_certsync=debug`,
/// `warn,dds_certsync=trace`; targets match by prefix, levels are `off`,
/// `error`, `warn`, `info`, `debug`, `trace`). Unset, blank or not
/// understood: `info`.
pub fn filter_from(rust_log: Option<&str>) -> Targets {
    rust_log
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

/// Installs the global subscriber, filtered by `RUST_LOG` ([`filter_from`]).
pub fn init(format: LogFormat) {
    let filter = filter_from(std::env::var("RUST_LOG").ok().as_deref());
    // The builder's own level lets everything through: the filter decides.
    let builder = tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_writer(|| QueueWriter)
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder
            .fmt_fields(EscapedFields)
            .with_ansi(std::io::stderr().is_terminal())
            .finish()
            .with(filter)
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .finish()
            .with(filter)
            .try_init(),
    };
    // A second init (in tests) keeps the first subscriber.
    drop(result);
    std::panic::set_hook(Box::new(report_panic));
}

/// The panic hook: the default hook's first line and message, queued like a
/// log line instead of written to stderr.
fn report_panic(info: &std::panic::PanicHookInfo<'_>) {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("<unnamed>");
    let payload = info.payload();
    let what = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("Box<dyn Any>");
    let at = info
        .location()
        .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_default();
    print_line(&format!(
        "thread '{}' panicked{at}: {}",
        escape_controls(name),
        escape_controls(what)
    ));
    if cfg!(panic = "abort") {
        flush(PANIC_FLUSH_LIMIT);
    }
}

/// How long a panic that aborts waits for its message to reach stderr.
const PANIC_FLUSH_LIMIT: Duration = Duration::from_secs(1);

/// Writes a line (a final newline is added) to stdout without waiting: the
/// line is queued for a writer thread, in order, never dropped. [`flush`]
/// waits for it, up to its limit.
pub fn print_stdout(line: &str) {
    let mut l = line.to_string();
    l.push('\n');
    let Some(q) = stdout_queue() else {
        let _ = std::io::stdout().write_all(l.as_bytes());
        return;
    };
    q.queued.fetch_add(1, Ordering::AcqRel);
    if q.tx.send(l.into_bytes()).is_err() {
        q.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The queue to stdout's writer thread (unbounded: its lines are few).
struct StdoutQueue {
    tx: Sender<Vec<u8>>,
    /// Lines sent and not yet written.
    queued: AtomicUsize,
    /// The writer, for [`flush`] to wake.
    writer: Thread,
}

/// Stdout's queue, once something was printed: see [`stdout_queue`].
static STDOUT_QUEUE: OnceLock<Option<StdoutQueue>> = OnceLock::new();

/// Stdout's queue, with its writer thread started on first use; `None` if
/// the thread cannot be started (then lines go straight to stdout).
fn stdout_queue() -> Option<&'static StdoutQueue> {
    STDOUT_QUEUE
        .get_or_init(|| {
            let (tx, rx) = channel::<Vec<u8>>();
            let writer = spawn_writer("stdout-writer", rx, write_stdout, |n| {
                if let Some(q) = stdout_queue() {
                    q.queued.fetch_sub(n, Ordering::AcqRel);
                }
            })?;
            Some(StdoutQueue {
                tx,
                queued: AtomicUsize::new(0),
                writer,
            })
        })
        .as_ref()
}

fn write_stdout(lines: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(lines).and_then(|()| out.flush());
}

fn write_stderr(lines: &[u8]) {
    let _ = std::io::stderr().write_all(lines);
}

/// Starts a writer thread: it takes the lines queued on `rx` and writes all
/// that are waiting, whole lines up to [`BATCH_BYTES`], with one call of
/// `write`, then tells `written` how many went. After writing everything
/// that was queued it lets [`LINGER`] pass (or [`flush`] wake it) before it
/// looks again, so that a burst of lines (a round over thousands of
/// instances logs several per instance) costs a wake-up and a write per
/// batch rather than per line. A line logged at rest is written at once.
fn spawn_writer(
    name: &str,
    rx: Receiver<Vec<u8>>,
    write: fn(&[u8]),
    written: fn(usize),
) -> Option<Thread> {
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            while let Ok(mut lines) = rx.recv() {
                let mut n = 1;
                let mut drained = false;
                while lines.len() < BATCH_BYTES {
                    let Ok(more) = rx.try_recv() else {
                        drained = true;
                        break;
                    };
                    lines.extend_from_slice(&more);
                    n += 1;
                }
                write(&lines);
                written(n);
                if drained {
                    std::thread::park_timeout(LINGER);
                }
            }
        });
    spawned.ok().map(|handle| handle.thread().clone())
}

/// Writes a line (a final newline is added) to stderr without waiting, like
/// the log lines: for the last words of `main`.
pub fn print_line(line: &str) {
    let mut l = line.to_string();
    l.push('\n');
    enqueue(l.into_bytes());
}

/// Waits until the queued lines (stderr's and stdout's) are written, or
/// `limit` has passed.
pub fn flush(limit: Duration) {
    let start = Instant::now();
    // Only queues in use: a writer is never started at exit to wait for
    // nothing (the daemon prints nothing to stdout).
    let log = || LOG_QUEUE.get().and_then(Option::as_ref);
    let stdout = || STDOUT_QUEUE.get().and_then(Option::as_ref);
    // A writer letting a burst gather need not finish its wait.
    if let Some(q) = log() {
        q.writer.unpark();
    }
    if let Some(q) = stdout() {
        q.writer.unpark();
    }
    let pending = || {
        log().is_some_and(|q| q.queued.load(Ordering::Acquire) > 0)
            || stdout().is_some_and(|q| q.queued.load(Ordering::Acquire) > 0)
    };
    // Short naps first: the writers usually need microseconds, and a run of
    // `--once` is over in a few milliseconds.
    let mut nap = Duration::from_micros(50);
    while pending() && start.elapsed() < limit {
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(5));
    }
}

/// The queue to the writer thread.
struct Queue {
    tx: SyncSender<Vec<u8>>,
    /// Lines sent and not yet written.
    queued: AtomicUsize,
    /// Dropped since the last report.
    dropped: AtomicU64,
    /// The writer, for [`flush`] to wake.
    writer: Thread,
}

/// The log queue, once something was logged: see [`queue`].
static LOG_QUEUE: OnceLock<Option<Queue>> = OnceLock::new();

/// The queue, with its writer thread started on first use; `None` if the
/// thread cannot be started (then lines go straight to stderr).
fn queue() -> Option<&'static Queue> {
    LOG_QUEUE
        .get_or_init(|| {
            let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE_LINES);
            let writer = spawn_writer("log-writer", rx, write_stderr, |n| {
                if let Some(q) = queue() {
                    q.queued.fetch_sub(n, Ordering::AcqRel);
                    report_drops(q);
                }
            })?;
            Some(Queue {
                tx,
                queued: AtomicUsize::new(0),
                dropped: AtomicU64::new(0),
                writer,
            })
        })
        .as_ref()
}

/// After a line got through: says how many were lost before it.
fn report_drops(q: &Queue) {
    let n = q.dropped.swap(0, Ordering::AcqRel);
    if n > 0 {
        tracing::warn!(
            dropped = n,
            "{n} log line(s) dropped: stderr was not being read"
        );
    }
}

fn enqueue(line: Vec<u8>) {
    let Some(q) = queue() else {
        let _ = std::io::stderr().write_all(&line);
        return;
    };
    q.queued.fetch_add(1, Ordering::AcqRel);
    match q.tx.try_send(line) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
            q.queued.fetch_sub(1, Ordering::AcqRel);
            q.dropped.fetch_add(1, Ordering::Relaxed);
            DROPPED_TOTAL.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The subscriber's writer: each event arrives as one `write_all` of the
/// whole formatted line, which is queued whole.
struct QueueWriter;

impl Write for QueueWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        enqueue(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `s` with every control character (C0, DEL, C1) escaped: `\n`, `\r`,
/// `\t`, `\x1b`, `\u{9b}`. Other text, backslashes included, is unchanged.
/// Pure.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The text format's fields: `message key=value …` like tracing-subscriber's
/// default, with [`escape_controls`] applied to the message and to every
/// value.
struct EscapedFields;

impl<'w> FormatFields<'w> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = EscapingVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

struct EscapingVisitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        let text = format!("{value:?}");
        let sep = if std::mem::take(&mut self.first) {
            ""
        } else {
            " "
        };
        let name = field.name();
        self.result = if name == "message" {
            write!(self.writer, "{sep}{}", escape_controls(&text))
        } else {
            let name = name.strip_prefix("r#").unwrap_or(name);
            write!(self.writer, "{sep}{name}={}", escape_controls(&text))
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(escape_controls("plain text é \\n"), "plain text é \\n");
        assert!(matches!(escape_controls("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape_controls("a\nb\r\tc\x1b[31m\x07\x00\x7f\u{9b}\u{85}z"),
            "a\\nb\\r\\tc\\x1b[31m\\x07\\x00\\x7f\\u{9b}\\u{85}z"
        );
    }

    #[test]
    fn text_fields_are_one_line_whatever_the_values_hold() {
        use tracing_subscriber::fmt::MakeWriter;

        #[derive(Clone, Default)]
        struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl<'a> MakeWriter<'a> for Buf {
            type Writer = Buf;
            fn make_writer(&'a self) -> Buf {
                self.clone()
            }
        }

        let buf = Buf::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .fmt_fields(EscapedFields)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let subject = "CN=x\nINFO forged\x1b[2J";
            tracing::info!(subject = %subject, raw = "q\r", "got {}", "m\u{9b}\n");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            out,
            " INFO got m\\u{9b}\\n subject=CN=x\\nINFO forged\\x1b[2J raw=\"q\\r\"\n"
        );
    }

    #[test]
    fn rust_log_takes_levels_and_targets_and_falls_back_to_info() {
        use tracing::Level;
        let on = |f: &Targets, target: &str, level: Level| f.would_enable(target, &level);
        for unset in [None, Some(""), Some("  "), Some("x=loud")] {
            let f = filter_from(unset);
            assert!(on(&f, "dds_certsync::sync", Level::INFO), "{unset:?}");
            assert!(!on(&f, "dds_certsync::sync", Level::DEBUG), "{unset:?}");
        }
        let f = filter_from(Some("debug"));
        assert!(on(&f, "dds_certsync::sync", Level::DEBUG));
        assert!(on(&f, "hyper_util::client", Level::DEBUG));
        assert!(!on(&f, "dds_certsync::sync", Level::TRACE));
        // The unit file's example: our targets only (by prefix).
        let f = filter_from(Some("dds_certsync=debug"));
        assert!(on(&f, "dds_certsync::cloud::iam", Level::DEBUG));
        assert!(!on(&f, "hyper_util::client", Level::ERROR));
        let f = filter_from(Some("warn,dds_certsync=trace"));
        assert!(on(&f, "dds_certsync", Level::TRACE));
        assert!(on(&f, "rustls", Level::WARN));
        assert!(!on(&f, "rustls", Level::INFO));
        assert!(!on(&filter_from(Some("off")), "dds_certsync", Level::ERROR));
    }
}
