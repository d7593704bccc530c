//! `dds-standin`: runs the DDS stand-in in the foreground for humans and
//! demos.
//!
//! ```text
//! dds-standin --dir DIR [--instance PROJECT/ID ...] [--token T]
//!             [--aksk AK:SK ...] [--iam-user DOMAIN/USER:PASSWORD ...]
//!             [--api-port N] [--download-port N] [--iam-port N] [--metadata-port N]
//! ```
//!
//! Writes `DIR/ca.pem` (trust it for the HTTPS listeners), prints the API
//! URL, the download host, the IAM and metadata URLs, and serves until
//! SIGTERM or Ctrl-C. Rotate a
//! certificate with e.g.
//! `curl --cacert DIR/ca.pem -X POST 'https://127.0.0.1:PORT/__standin/rotate?instance=I&category=national'`;
//! `GET /__standin/` lists the whole admin API.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dds_standin::{Options, StandIn};

/// Local HTTPS stand-in of the Huawei Cloud DDS API and its certificate download host.
#[derive(Debug, Parser)]
#[command(name = "dds-standin", version)]
struct Args {
    /// Directory to write ca.pem into (created if missing).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Instance to serve, as PROJECT/ID; repeatable.
    #[arg(long = "instance", value_name = "PROJECT/ID", value_parser = parse_instance)]
    instances: Vec<(String, String)>,
    /// The X-Auth-Token the API accepts.
    #[arg(
        long,
        value_name = "T",
        default_value = "standin-token",
        hide_default_value = true
    )]
    token: String,
    /// A permanent AK/SK pair the API accepts, as AK:SK; repeatable.
    #[arg(long = "aksk", value_name = "AK:SK", value_parser = parse_aksk)]
    aksk: Vec<(String, String)>,
    /// An IAM user, as DOMAIN/USER:PASSWORD; repeatable.
    #[arg(long = "iam-user", value_name = "DOMAIN/USER:PASSWORD", value_parser = parse_user)]
    iam_users: Vec<(String, String, String)>,
    /// Port of the API listener on 127.0.0.1 (0 = any free port).
    #[arg(long, value_name = "N", default_value_t = 0)]
    api_port: u16,
    /// Port of the download listener on 127.0.0.1 (0 = any free port).
    #[arg(long, value_name = "N", default_value_t = 0)]
    download_port: u16,
    /// Port of the IAM listener on 127.0.0.1 (0 = any free port).
    #[arg(long, value_name = "N", default_value_t = 0)]
    iam_port: u16,
    /// Port of the plain-HTTP metadata listener on 127.0.0.1 (0 = any free port).
    #[arg(long, value_name = "N", default_value_t = 0)]
    metadata_port: u16,
}

fn parse_aksk(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((ak, sk)) if !ak.is_empty() && !sk.is_empty() => Ok((ak.to_owned(), sk.to_owned())),
        _ => Err("expected AK:SK".to_owned()),
    }
}

fn parse_user(s: &str) -> Result<(String, String, String), String> {
    let parsed = s.split_once('/').and_then(|(domain, rest)| {
        let (user, password) = rest.split_once(':')?;
        Some((domain.to_owned(), user.to_owned(), password.to_owned()))
    });
    match parsed {
        Some((d, u, p)) if !d.is_empty() && !u.is_empty() && !p.is_empty() => Ok((d, u, p)),
        _ => Err("expected DOMAIN/USER:PASSWORD".to_owned()),
    }
}

fn parse_instance(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((p, i)) if !p.is_empty() && !i.is_empty() && !i.contains('/') => {
            Ok((p.to_owned(), i.to_owned()))
        }
        _ => Err(format!("expected PROJECT/ID, got {s:?}")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dds-standin: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| format!("cannot create {}: {e}", args.dir.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    // Handlers first, so a SIGTERM during start-up still ends us cleanly.
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;

    let standin = StandIn::try_start_with(Options {
        token: args.token,
        api_port: args.api_port,
        download_port: args.download_port,
        iam_port: args.iam_port,
        metadata_port: args.metadata_port,
        aksk: args.aksk,
        ..Options::default()
    })
    .map_err(|e| format!("cannot start: {e}"))?;
    for (project, instance) in &args.instances {
        standin.add_instance(project, instance);
    }
    for (domain, user, password) in &args.iam_users {
        standin.add_iam_user(domain, user, password);
    }
    let ca_path = args.dir.join("ca.pem");
    standin
        .write_ca(&ca_path)
        .map_err(|e| format!("cannot write {}: {e}", ca_path.display()))?;

    println!("api_url={}", standin.api_url());
    println!("download_host={}", standin.download_host());
    println!("iam_url={}", standin.iam_url());
    println!("metadata_url={}", standin.metadata_url());
    println!("ca_file={}", ca_path.display());
    for (project, instance) in &args.instances {
        println!(
            "instance={project}/{instance} tls={}",
            standin.instance_addr(instance)
        );
    }
    println!(
        "admin: curl --cacert {} {}/__standin/",
        ca_path.display(),
        standin.api_url()
    );

    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    drop(standin);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_argument_needs_project_and_id() {
        assert_eq!(parse_instance("p/i"), Ok(("p".to_owned(), "i".to_owned())));
        assert!(parse_instance("p").is_err());
        assert!(parse_instance("/i").is_err());
        assert!(parse_instance("p/").is_err());
        assert!(parse_instance("p/i/x").is_err());
    }

    #[test]
    fn credential_arguments_parse() {
        assert_eq!(
            parse_aksk("AK:S:K"),
            Ok(("AK".to_owned(), "S:K".to_owned()))
        );
        assert!(parse_aksk("AK").is_err());
        assert!(parse_aksk(":SK").is_err());
        assert_eq!(
            parse_user("d/u:p:w"),
            Ok(("d".to_owned(), "u".to_owned(), "p:w".to_owned()))
        );
        assert!(parse_user("d/u").is_err());
        assert!(parse_user("u:p").is_err());
    }
}
