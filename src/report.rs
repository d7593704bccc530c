//! What a round produced: per output, what happened to its file
//! ([`FileReport`]) and what it keeps ([`KeptReport`]); the failures, each with its [`Reason`]; the hook's
//! result; whether a retry soon may help. [`crate::sync::Syncer::sync`]
//! returns one; `--once` prints its [`Report::summary`], the daemon turns it
//! into `STATUS=`, metrics and the self-healing's held bytes.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::certcheck::Sha256Digest;
use crate::config::Category;
use crate::hooks::HookError;
use crate::outputs::Observation;
use crate::reason::Reason;

/// What happened to one output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    Unchanged,
    Replaced {
        old: Option<Sha256Digest>,
        new: Sha256Digest,
    },
    /// Dry run: it would have been replaced.
    WouldReplace {
        old: Option<Sha256Digest>,
        new: Sha256Digest,
    },
    Failed(String),
}

/// One file's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    pub category: Category,
    /// The key that configures the output: `international`, `national` or
    /// `truststore`.
    pub output: &'static str,
    pub path: PathBuf,
    pub outcome: FileOutcome,
    /// The canonical PEM of the bundle (the served certificates, then those
    /// kept: `keep_previous`), when the download passed the checks, and the
    /// digest of the file the output's format makes of it
    /// ([`Format::digest`](crate::outputs::Format::digest)): what the file
    /// holds after `Unchanged` or `Replaced` (kept by the self-healing,
    /// which renders it again in the output's format).
    /// The last part is the format as the round used it
    /// ([`Format::resolved`](crate::outputs::Format::resolved)).
    pub pem: Option<(Vec<u8>, Sha256Digest, crate::outputs::Format)>,
    /// What is at the path after the round: what the round read there, or
    /// what it wrote. `None`: it did not look (or cannot say).
    pub seen: Option<Observation>,
}

/// What an output keeps after a round (`keep_previous`), for the metrics,
/// the scheduler and readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptReport {
    pub category: Category,
    /// How many superseded certificates the file holds after the served ones.
    pub kept: usize,
    /// When the next of them is due to leave (Unix seconds).
    pub next_drop: Option<i64>,
    /// The earliest notAfter of the served (current) certificates.
    pub current_not_after: i64,
}

/// Why a round failed, for the log and for the metrics' `reason` label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    pub message: String,
}

/// The result of one round for one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub files: Vec<FileReport>,
    /// `None`: no hook was due. `Some(Ok)`: it ran and succeeded.
    pub hook: Option<Result<(), HookError>>,
    pub failures: Vec<Failure>,
    /// Whether a retry soon may help (network trouble, throttling, 5xx).
    pub transient: bool,
    /// The delay the server asked for.
    pub retry_after: Option<Duration>,
    /// Per output whose bundle was decided: what it keeps.
    pub kept: Vec<KeptReport>,
}

impl Report {
    /// When the next kept certificate of the instance is due to leave its
    /// file (Unix seconds): the next round must come by then.
    pub fn next_drop(&self) -> Option<i64> {
        self.kept.iter().filter_map(|k| k.next_drop).min()
    }

    /// How soon after this round the next must come, for a kept
    /// certificate due to leave its file: a second after its drop time (the
    /// time is kept to the second), at once if that has passed.
    pub fn due_within(&self) -> Option<Duration> {
        let at = self.next_drop()?;
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap_or(0));
        Some(at.duration_since(SystemTime::now()).unwrap_or_default() + Duration::from_secs(1))
    }

    /// Whether every configured file is in place and current and any hook
    /// succeeded.
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && !matches!(self.hook, Some(Err(_)))
    }

    /// One line for humans: what happened to each file.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .files
            .iter()
            .map(|f| {
                let what = match &f.outcome {
                    FileOutcome::Unchanged => "unchanged".to_string(),
                    FileOutcome::Replaced { old: None, .. } => "created".to_string(),
                    FileOutcome::Replaced { .. } => "replaced".to_string(),
                    FileOutcome::WouldReplace { old: None, .. } => "would be created".to_string(),
                    FileOutcome::WouldReplace { .. } => "would be replaced".to_string(),
                    FileOutcome::Failed(why) => format!("FAILED ({why})"),
                };
                format!("{} {what}", f.output)
            })
            .collect();
        if parts.is_empty() {
            // The API call itself failed.
            parts.extend(self.failures.iter().map(|f| f.message.clone()));
        }
        match &self.hook {
            Some(Ok(())) => parts.push("hook ok".into()),
            Some(Err(e)) => parts.push(format!("hook FAILED ({e})")),
            None => {}
        }
        parts.join("; ")
    }

    /// Adds a failure; `transient` if a retry soon may help.
    pub(crate) fn fail(&mut self, reason: Reason, message: String, transient: bool) {
        self.transient |= transient;
        self.failures.push(Failure { reason, message });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(category: Category, outcome: FileOutcome) -> FileReport {
        FileReport {
            category,
            output: category.as_str(),
            path: PathBuf::from("/x"),
            outcome,
            pem: None,
            seen: None,
        }
    }

    #[test]
    fn a_round_is_ok_without_failures_and_without_a_failed_hook() {
        let mut r = Report::default();
        assert!(r.ok());
        r.hook = Some(Err(HookError::Ledger("x".into())));
        assert!(!r.ok());
        let mut r = Report::default();
        r.fail(Reason::Download, "international: gone".into(), true);
        assert!(!r.ok() && r.transient);
        r.fail(Reason::Verify, "national: bad".into(), false);
        assert!(
            r.transient,
            "one transient failure makes the round transient"
        );
    }

    #[test]
    fn the_summary_says_per_file_what_happened_then_the_hook() {
        let r = Report {
            files: vec![
                file(
                    Category::International,
                    FileOutcome::Replaced {
                        old: None,
                        new: [1; 32],
                    },
                ),
                file(Category::National, FileOutcome::Failed("HTTP 404".into())),
                FileReport {
                    output: "truststore",
                    ..file(Category::International, FileOutcome::Unchanged)
                },
            ],
            hook: Some(Ok(())),
            ..Report::default()
        };
        assert_eq!(
            r.summary(),
            "international created; national FAILED (HTTP 404); truststore unchanged; hook ok"
        );
        // No file reached: the failures say why.
        let mut r = Report::default();
        r.fail(
            Reason::ApiThrottled,
            "the API answered HTTP 429".into(),
            true,
        );
        assert_eq!(r.summary(), "the API answered HTTP 429");
    }
}
