//! The `dds-certsync` binary: parses the command line, runs the library on a
//! single-threaded runtime, and maps the result to an exit status:
//! 0 ok, 1 sync failure, 2 usage or config error.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use dds_certsync::{Outcome, cli::Cli, logging};

fn main() -> ExitCode {
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
    let code = match runtime.block_on(dds_certsync::run(cli)) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::SyncFailed) => ExitCode::from(1),
        Err(e) => {
            logging::print_line(&format!("dds-certsync: {e}"));
            ExitCode::from(2)
        }
    };
    // Stderr gets a moment for the last lines; a stalled one does not hold
    // the exit.
    logging::flush(FLUSH_LIMIT);
    code
}

/// How long the last log lines may take to reach stderr at exit.
const FLUSH_LIMIT: Duration = Duration::from_secs(1);
