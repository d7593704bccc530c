//! The validated form of the config: what the rest of the program uses,
//! and the defaults [`super::validate`] fills in.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use std::collections::BTreeMap;

use super::{Auth, NameOrId, SecretSource};
pub use crate::catalog::Category;
use crate::catalog::Service;

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub cloud: Cloud,
    pub auth: Auth,
    pub sync: SyncSettings,
    pub instances: Vec<Instance>,
    pub server: Server,
}

/// `[server]`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Server {
    /// Where `/healthz`, `/readyz` and `/metrics` are served; `None`: nowhere.
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cloud {
    pub region: Option<String>,
    /// The endpoint of every service the instances use, `https://host[:port]`
    /// without a trailing slash: `cloud.endpoint` (DDS) or
    /// `cloud.endpoints.<service>` when set, else the SDK's endpoint of
    /// `cloud.region`. Services no instance uses have none.
    pub endpoints: BTreeMap<Service, String>,
    /// The IAM endpoint, when derivable or given.
    pub iam_endpoint: Option<String>,
    pub ca_file: Option<PathBuf>,
}

impl Cloud {
    /// The endpoint of `service`, if an instance uses it.
    pub fn endpoint(&self, service: Service) -> Option<&str> {
        self.endpoints.get(&service).map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyncSettings {
    pub interval: Duration,
    pub jitter: Duration,
    pub timeout: Duration,
    pub max_backoff: Duration,
    pub concurrency: usize,
    pub state_dir: PathBuf,
    /// A certificate on disk expiring within this is warned about.
    pub expiry_warning: Duration,
    /// How often an instance's `probe` addresses are checked, unless the
    /// instance sets its own.
    pub probe_interval: Duration,
    /// How long a superseded certificate stays in the file (the default of
    /// every instance's [`Instance::keep_previous`]).
    pub keep_previous: Duration,
}

/// One configured database instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub id: String,
    /// The service the instance belongs to (`service`, `dds` by default):
    /// which API its round asks.
    pub service: Service,
    pub name: Option<String>,
    pub project_id: String,
    /// Where each requested category goes, in category order.
    pub outputs: Vec<Output>,
    pub perms: Perms,
    pub on_change: Option<Vec<String>>,
    pub hook_timeout: Duration,
    /// Instead of `on_change`: a signal sent to the process in a pidfile.
    pub reload_signal: Option<ReloadSignal>,
    /// Accept certificates whose basicConstraints say `CA:FALSE`.
    pub allow_non_ca: bool,
    /// `probe`: the nodes whose server certificate is checked against the
    /// `international` file on disk; `None` when not set.
    pub probe: Option<Probe>,
    /// How long a superseded certificate stays in the file, after the
    /// served ones (`sync.keep_previous` unless the instance sets its own);
    /// zero replaces the file outright. See [`crate::overlap`].
    pub keep_previous: Duration,
}

impl Instance {
    /// The name for logs: the configured name, else the id.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    /// Whether a change is followed by a hook (a command or a signal).
    pub fn has_hook(&self) -> bool {
        self.on_change.is_some() || self.reload_signal.is_some()
    }
}

/// `reload_signal` + `pidfile`: the signal to send, and the file naming the
/// process, re-read on every delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadSignal {
    pub signal: nix::sys::signal::Signal,
    pub pidfile: PathBuf,
    /// `reload_signal_any_owner`: signal the process even if its user is not
    /// the pidfile's owner.
    pub any_owner: bool,
}

/// `probe` and its interval, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// At least one, no two alike, in the config's order.
    pub addresses: Vec<ProbeAddr>,
    /// `probe_interval`: the instance's own, else `sync.probe_interval`.
    pub interval: Duration,
}

/// One `probe` address: a host (a DNS name, an IPv4 or an IPv6 address)
/// and a port. Displayed as written: `host:port`, an IPv6 address in
/// brackets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProbeAddr {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for ProbeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How a `truststore` output is protected and encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truststore {
    /// `truststore_password` / `_file` / `_env`; `changeit` when none is set.
    pub password: SecretSource,
    pub profile: crate::truststore::Profile,
}

/// One file an instance writes: the certificates of `category`, as PEM, or
/// as a Java truststore (the `truststore` key, always of `international`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub category: Category,
    pub path: PathBuf,
    /// `Some`: a PKCS#12 truststore rather than a PEM file.
    pub truststore: Option<Truststore>,
}

impl Output {
    /// A PEM output.
    pub fn pem(category: Category, path: PathBuf) -> Output {
        Output {
            category,
            path,
            truststore: None,
        }
    }

    /// The key that configures it (`international`, `national`,
    /// `truststore`): its name in logs, errors and metrics.
    pub fn name(&self) -> &'static str {
        if self.truststore.is_some() {
            "truststore"
        } else {
            self.category.as_str()
        }
    }
}

/// Ownership and mode of written files. `None` keeps what the existing file
/// has (or the defaults for a new file: mode 0644, the daemon's user).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Perms {
    pub mode: Option<u32>,
    pub owner: Option<NameOrId>,
    pub group: Option<NameOrId>,
    /// Filled in by [`resolve`].
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

pub(super) const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);
pub(super) const DEFAULT_JITTER: Duration = Duration::from_secs(300);
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub(super) const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(1800);
pub(super) const DEFAULT_CONCURRENCY: usize = 8;
pub(super) const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(30);
pub(super) const DEFAULT_STATE_DIR: &str = "/var/lib/dds-certsync";
pub(super) const DEFAULT_EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);
pub(super) const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(5 * 60);
pub(super) const DEFAULT_KEEP_PREVIOUS: Duration = Duration::from_secs(30 * 24 * 3600);
