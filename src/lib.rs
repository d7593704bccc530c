//! dds-certsync keeps the TLS CA certificates of Huawei Cloud DDS instances
//! (and RDS, GeminiDB, openGauss and DCS ones) current on disk. See ARCHITECTURE.md for the map; [`run`] is the entry.

pub mod backoff;
pub mod catalog;
pub mod certcheck;
pub mod cli;
pub mod cloud;
pub mod config;
pub mod daemon;
pub mod failpoint;
#[doc(hidden)]
pub mod fuzzcheck;
pub mod heal;
pub mod health;
pub mod hooks;
pub mod ledger;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod once;
pub mod output;
pub mod outputs;
pub mod overlap;
pub mod plan;
pub mod probe;
pub mod readfile;
pub mod reason;
pub mod reload;
pub mod report;
pub mod scheduler;
pub mod secret;
pub mod server;
pub mod service;
pub mod sync;
pub mod truststore;
pub mod watch;

use std::sync::Arc;

use cli::Cli;
use config::ConfigError;
use sync::Syncer;

/// How a run ended, when it ended normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything is in place and current (or the config is valid, or the
    /// daemon was stopped by a signal).
    Ok,
    /// At least one instance failed to sync.
    SyncFailed,
}

/// Errors that stop the program before it syncs: usage or config errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Setup(#[from] cloud::BuildError),
}

/// Runs what the command line asks for.
pub async fn run(cli: Cli) -> Result<Outcome, Error> {
    // Off the runtime thread: the file, secret files and user lookups may stall.
    let config::Loaded { config, bytes } = config::load_async(cli.config.clone()).await?;
    // The parse's working memory is freed by now; give it back.
    memory::release_freed();
    if cli.check {
        // Queued like the --once summary: a stalled stdout holds nothing.
        logging::print_stdout(&format!(
            "{}: ok ({} instance{})",
            cli.config.display(),
            config.instances.len(),
            if config.instances.len() == 1 { "" } else { "s" }
        ));
        return Ok(Outcome::Ok);
    }
    let delivery = hooks::Delivery::new(&config);
    // Only the daemon serves metrics: `--once` counts its API requests nowhere.
    let observer = if cli.once {
        cloud::ApiObserver::default()
    } else {
        daemon::api_observer()
    };
    // Building the client reads `cloud.ca_file`: file I/O, on the blocking
    // pool like every other read of a file others control.
    let dry_run = cli.dry_run;
    let (config, built) = tokio::task::spawn_blocking(move || {
        let built = Syncer::new(&config, dry_run, Arc::new(delivery), observer);
        (config, built)
    })
    .await
    .map_err(|e| cloud::BuildError::Tls(format!("building the client failed: {e}")))?;
    let syncer = Arc::new(built?);
    if !cli.dry_run {
        clean_stale_temps(&config, &syncer).await;
    }
    if cli.once {
        drop(bytes);
        let ok = once::run(&config, syncer, cli.deadline, service::shutdown_signal()).await;
        Ok(if ok { Outcome::Ok } else { Outcome::SyncFailed })
    } else {
        daemon::run(cli.config.clone(), config, bytes, syncer).await?;
        Ok(Outcome::Ok)
    }
}

/// Removes the temporary files an interrupted write left, in `sync.state_dir`
/// and next to every output, on the blocking pool, and says where; turns
/// records of kept certificates of an older version into the current one
/// ([`overlap::Store::upgrade`]). Each output directory is read once however
/// many outputs it holds; the state directory by the ledger's cleanup, the
/// kept-certificate store's, and the upgrade.
async fn clean_stale_temps(config: &config::Config, syncer: &Syncer) {
    let ledger = syncer.delivery.ledger().clone();
    let outputs: Vec<std::path::PathBuf> = config
        .instances
        .iter()
        .flat_map(|i| &i.outputs)
        .map(|o| o.path.clone())
        .collect();
    let cleaned = tokio::task::spawn_blocking(move || {
        let kept = overlap::Store::new(ledger.dir());
        let in_state_dir = ledger.clean_stale_temps() + kept.clean_stale_temps();
        let upgraded = kept.upgrade();
        let refs: Vec<&std::path::Path> = outputs.iter().map(|p| p.as_path()).collect();
        let removed = output::clean_stale_temps_all(&refs);
        let per_output: Vec<_> = outputs
            .into_iter()
            .zip(removed)
            .filter(|(_, n)| *n > 0)
            .collect();
        (in_state_dir, upgraded, per_output)
    })
    .await;
    let Ok((n, upgraded, per_output)) = cleaned else {
        return;
    };
    if upgraded.converted > 0 {
        tracing::info!(state_dir = %config.sync.state_dir.display(), "converted the records of kept certificates of {} instance(s) to one file per instance", upgraded.converted);
    }
    for (path, why) in upgraded.failed {
        tracing::warn!(path = %path.display(), "cannot convert this record of kept certificates ({why}); it is left in place, and the windows of its output's previous certificates start again from now");
    }
    if n > 0 {
        tracing::warn!(state_dir = %config.sync.state_dir.display(), "removed {n} temporary file(s) left by an interrupted write");
    }
    for (path, n) in per_output {
        tracing::warn!(path = %path.display(), "removed {n} temporary file(s) left by an interrupted write");
    }
}
