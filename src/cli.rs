//! The command line, as clap parses it. Only what the user typed is checked
//! here; everything that consults the system happens in [`crate::config`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::config::DEFAULT_PATH;
pub use crate::logging::LogFormat;

/// Keeps the TLS CA certificates of Huawei Cloud database instances current on disk.
///
/// DDS (the default), RDS, GeminiDB, openGauss and DCS: each instance's
/// `service` says which.
///
/// Without --once, runs as a daemon: syncs every configured instance at start,
/// then every `sync.interval`, replacing a file only when its certificate
/// changed, and running the instance's `on_change` hook afterwards.
#[derive(Debug, Clone, Parser)]
#[command(name = "dds-certsync", version, about, long_about)]
#[command(after_help = after_help())]
pub struct Cli {
    /// The config file.
    #[arg(short, long, value_name = "PATH", env = "DDS_CERTSYNC_CONFIG", default_value = DEFAULT_PATH)]
    pub config: PathBuf,

    /// Sync every instance once, print a summary line per instance, and exit.
    #[arg(long, conflicts_with = "check")]
    pub once: bool,

    /// Validate the config and exit 0 or 2. Writes nothing, contacts nothing.
    #[arg(long)]
    pub check: bool,

    /// Fetch and verify, but write nothing and run no hooks; print what would change.
    #[arg(long, conflicts_with = "check")]
    pub dry_run: bool,

    /// Log format.
    #[arg(long, value_enum, value_name = "FORMAT", env = "DDS_CERTSYNC_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// With --once: give up on whatever is unfinished after this long (e.g. 90s, 5m).
    #[arg(long, value_name = "DURATION", env = "DDS_CERTSYNC_DEADLINE", default_value = "2m", value_parser = parse_duration)]
    pub deadline: Duration,
}

/// The exit statuses `main` maps a run to, with what each means. `--help`
/// and the man page (generated from this module, see `packaging/assets`)
/// both print them from here.
pub const EXIT_STATUSES: [(u8, &str); 3] = [
    (
        0,
        "ok (--once: every file is in place and current; --check: the config is valid; \
         daemon: stopped by SIGTERM or SIGINT)",
    ),
    (
        1,
        "at least one instance failed to sync (the others were still synced)",
    ),
    (
        2,
        "usage or config error; the message names the file and the key",
    ),
];

/// Where logs go and what sets their level.
pub const LOGGING: &str = "Logs go to stderr; the level is set with RUST_LOG (default: info).";

fn after_help() -> String {
    let mut text = String::from("Exit status:\n");
    for (code, meaning) in EXIT_STATUSES {
        text.push_str(&format!("  {code}  {meaning}\n"));
    }
    text.push('\n');
    text.push_str(LOGGING);
    text
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be greater than zero".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn once_and_check_conflict() {
        assert!(Cli::try_parse_from(["dds-certsync", "--once", "--check"]).is_err());
        let c = Cli::try_parse_from(["dds-certsync", "--once", "--deadline", "90s"]).unwrap();
        assert_eq!(c.deadline, Duration::from_secs(90));
        assert!(Cli::try_parse_from(["dds-certsync", "--deadline", "0s"]).is_err());
    }
}
