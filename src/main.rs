//! The `dds-certsync` binary: parses the command line, runs the library on a
//! single-threaded runtime, and maps the result to an exit status:
//! 0 ok, 1 sync failure, 2 usage or config error.
//!
//! Log lines go through a bounded queue to a writer thread (see `logging`),
//! and stdout's lines through another, so a stalled stderr or stdout never
//! holds the exit: they get at most [`FLUSH_LIMIT`] together.
//!
//! When the run has ended (`--deadline`, a signal, or done), the runtime is
//! shut down without waiting more than [`BLOCKING_GRACE`] for blocking-pool
//! threads: one stuck in a system call that never returns (a FIFO, a hung
//! network file system) must not keep the process alive.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use dds_certsync::{Outcome, cli::Cli, logging};

/// How long the exit waits for blocking-pool threads still running.
const BLOCKING_GRACE: Duration = Duration::from_millis(500);

fn main() -> ExitCode {
    dds_certsync::memory::one_arena();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors.
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    logging::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            logging::print_line(&format!("dds-certsync: cannot start the runtime: {e}"));
            logging::flush(FLUSH_LIMIT);
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(dds_certsync::run(cli));
    runtime.shutdown_timeout(BLOCKING_GRACE);
    let code = match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::SyncFailed) => ExitCode::from(1),
        Err(e) => {
            logging::print_line(&format!("dds-certsync: {e}"));
            ExitCode::from(2)
        }
    };
    // Stderr and stdout get a moment for the last lines; a stalled one does
    // not hold the exit.
    logging::flush(FLUSH_LIMIT);
    code
}

/// How long the last log lines may take to reach stderr at exit.
const FLUSH_LIMIT: Duration = Duration::from_secs(1);
