//! Configuration: the TOML file, parsed strictly and validated in one place.
//!
//! Loading happens in three steps, each usable on its own:
//!
//! 1. [`parse`]: text to raw structs. Pure. Every struct is
//!    `deny_unknown_fields`, so a misspelt key is an error, never ignored.
//! 2. [`validate`]: raw structs to a [`Config`] whose invariants hold (durations
//!    positive, at least one output per instance, no two outputs on one path,
//!    endpoints derivable, ...). Pure apart from nothing: it consults neither
//!    the file system nor the user database. [`validate_with_env`] is the same
//!    with a snapshot of the official SDKs' environment ([`SdkEnv`]), which the
//!    `auto` auth method and `HUAWEICLOUD_SDK_IAM_ENDPOINT` need.
//! 3. [`resolve`]: the part that consults the system: owner and group names,
//!    secret files holding a secret (not empty, not only whitespace), secret
//!    variables set to one, and no two outputs one file through a symlinked
//!    or twice-mounted directory.
//!
//! [`load`] reads the file once ([`read`]: a regular file, or a symlink to
//! one, of at most 1 MiB, never blocking on a FIFO) and runs all three on
//! those bytes, taking the [`SdkEnv`] snapshot itself; it returns the bytes
//! with the config ([`Loaded`]). It does blocking I/O: the daemon calls it
//! through [`load_async`], on the blocking pool. Secret files and the SDKs'
//! credentials file are read the same way.
//! Every error is a [`ConfigError`] that names the file, the key
//! (`sync.interval`, `instances[2].mode`, ...) and, where TOML knows it, the
//! line.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cloud::endpoint;
use crate::readfile::{self, Links, SMALL_FILE_LIMIT};

mod auth;
pub use auth::{
    AkSk, Auth, CredentialsFile, MetadataAuth, PasswordAuth, RawAuth, SdkEnv, SecretSource,
};

/// The default location of the config file.
pub const DEFAULT_PATH: &str = "/etc/dds-certsync/config.toml";

/// A config problem: which file, which key, which line, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub key: Option<String>,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

fn err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: PathBuf::new(),
        key: Some(key.into()),
        line: None,
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------
// Raw form: exactly what the file says.
// ---------------------------------------------------------------------------

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub cloud: RawCloud,
    pub auth: Option<RawAuth>,
    #[serde(default)]
    pub sync: RawSync,
    #[serde(default)]
    pub instances: Vec<RawInstance>,
    pub server: Option<RawServer>,
}

/// `[server]`: the health and metrics endpoints (off unless `listen` is set).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCloud {
    pub region: Option<String>,
    pub project_id: Option<String>,
    pub endpoint: Option<String>,
    pub iam_endpoint: Option<String>,
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSync {
    pub interval: Option<Dur>,
    pub jitter: Option<Dur>,
    pub timeout: Option<Dur>,
    pub max_backoff: Option<Dur>,
    pub concurrency: Option<i64>,
    pub state_dir: Option<PathBuf>,
    pub expiry_warning: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInstance {
    pub id: String,
    pub name: Option<String>,
    pub project_id: Option<String>,
    pub international: Option<PathBuf>,
    pub national: Option<PathBuf>,
    pub mode: Option<String>,
    pub owner: Option<NameOrId>,
    pub group: Option<NameOrId>,
    pub on_change: Option<Vec<String>>,
    pub hook_timeout: Option<Dur>,
    pub reload_signal: Option<String>,
    pub pidfile: Option<PathBuf>,
    pub allow_non_ca: Option<bool>,
    pub reload_signal_any_owner: Option<bool>,
}

/// A user or group, by name or by number.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum NameOrId {
    Id(u32),
    Name(String),
}

/// A humantime duration such as `30s`, `5m`, `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim()).map(Dur).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?} ({e}); write a number and a unit, such as \"30s\", \"5m\" or \"1h\""
            ))
        })
    }
}

// ---------------------------------------------------------------------------
// Validated form: what the rest of the program uses.
// ---------------------------------------------------------------------------

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
    /// The DDS endpoint, `https://host[:port]`, without a trailing slash.
    pub endpoint: String,
    /// The IAM endpoint, when derivable or given.
    pub iam_endpoint: Option<String>,
    pub ca_file: Option<PathBuf>,
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
}

/// The two certificate categories DDS offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// The standard certificate, used by ordinary MongoDB drivers.
    International,
    /// The SM-series (SM2/SM3) certificate.
    National,
}

impl Category {
    pub const ALL: [Category; 2] = [Category::International, Category::National];

    /// The name the API and the config use.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::International => "international",
            Category::National => "national",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One configured DDS instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub id: String,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub category: Category,
    pub path: PathBuf,
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

const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);
const DEFAULT_JITTER: Duration = Duration::from_secs(300);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(1800);
const DEFAULT_CONCURRENCY: usize = 8;
const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_STATE_DIR: &str = "/var/lib/dds-certsync";
const DEFAULT_EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

// ---------------------------------------------------------------------------
// Step 1: parse.
// ---------------------------------------------------------------------------

/// Parses TOML text into the raw form. Errors carry the key path and line.
pub fn parse(text: &str) -> Result<RawConfig, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| toml_error(text, "", e))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        toml_error(text, &path, e.into_inner())
    })
}

fn toml_error(text: &str, path: &str, e: toml::de::Error) -> ConfigError {
    let line = e
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    let key = (!path.is_empty() && path != ".").then(|| path.to_string());
    ConfigError {
        file: PathBuf::new(),
        key,
        line,
        message: e.message().trim().to_string(),
    }
}

// ---------------------------------------------------------------------------
// Step 2: validate.
// ---------------------------------------------------------------------------

/// Checks the raw config and builds the validated form. `base_dir` anchors
/// relative output paths (the directory of the config file).
pub fn validate(raw: RawConfig, base_dir: &Path) -> Result<Config, ConfigError> {
    validate_with_env(raw, base_dir, &SdkEnv::default())
}

/// [`validate`], with a snapshot of the official SDKs' environment
/// (`HUAWEICLOUD_SDK_*`, the credentials file), which the `auto` auth method
/// and `HUAWEICLOUD_SDK_IAM_ENDPOINT` consult. Still pure: the snapshot is
/// taken by [`load`].
pub fn validate_with_env(
    mut raw: RawConfig,
    base_dir: &Path,
    sdk_env: &SdkEnv,
) -> Result<Config, ConfigError> {
    let mut cloud = validate_cloud(&raw.cloud)?;
    let config_iam = raw.cloud.iam_endpoint.is_some();
    let (auth, auth_defaults) =
        auth::validate(raw.auth.take(), &mut cloud, config_iam, base_dir, sdk_env)?;
    let default_project = raw.cloud.project_id.clone().or(auth_defaults.project_id);
    if raw.cloud.project_id.is_none()
        && let Some(p) = &default_project
    {
        check_project_id("cloud.project_id", p)?;
    }
    let sync = validate_sync(&raw.sync, base_dir)?;

    if raw.instances.is_empty() {
        return Err(err(
            "instances",
            "no [[instances]] configured; add at least one",
        ));
    }
    let mut instances = Vec::with_capacity(raw.instances.len());
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut paths: HashMap<PathBuf, String> = HashMap::new();
    for (i, ri) in raw.instances.iter().enumerate() {
        let key = format!("instances[{i}]");
        let inst = validate_instance(&key, ri, default_project.as_deref(), base_dir)?;
        if let Some(first) = ids.insert(&ri.id, i) {
            return Err(err(
                format!("{key}.id"),
                format!(
                    "instance {:?} is configured twice (also instances[{first}])",
                    ri.id
                ),
            ));
        }
        for out in &inst.outputs {
            let this = format!("{key}.{}", out.category);
            if let Some(other) = paths.insert(out.path.clone(), this.clone()) {
                return Err(err(
                    this,
                    format!(
                        "path {} is also written by {other}; every output needs its own path",
                        out.path.display()
                    ),
                ));
            }
        }
        instances.push(inst);
    }
    let server = validate_server(raw.server.as_ref())?;
    Ok(Config {
        cloud,
        auth,
        sync,
        instances,
        server,
    })
}

fn validate_server(raw: Option<&RawServer>) -> Result<Server, ConfigError> {
    let Some(listen) = raw.and_then(|r| r.listen.as_deref()) else {
        return Ok(Server::default());
    };
    let addr = listen.trim().parse().map_err(|_| {
        err(
            "server.listen",
            format!(
                "{listen:?} is not an address and port such as \"127.0.0.1:9464\" or \"[::1]:9464\""
            ),
        )
    })?;
    Ok(Server { listen: Some(addr) })
}

fn validate_cloud(raw: &RawCloud) -> Result<Cloud, ConfigError> {
    if let Some(region) = &raw.region
        && region.trim().is_empty()
    {
        return Err(err("cloud.region", "must not be empty"));
    }
    let endpoint = match (&raw.endpoint, &raw.region) {
        (Some(e), _) => https_url("cloud.endpoint", e)?,
        (None, Some(region)) => endpoint::dds(region).ok_or_else(|| {
            err(
                "cloud.region",
                format!(
                    "unknown region {region:?}; use a region the official SDK knows, or set cloud.endpoint"
                ),
            )
        })?,
        (None, None) => {
            return Err(err(
                "cloud.region",
                "set cloud.region (for example \"cn-north-4\") or cloud.endpoint",
            ));
        }
    };
    let iam_endpoint = match (&raw.iam_endpoint, &raw.region) {
        (Some(e), _) => Some(https_url("cloud.iam_endpoint", e)?),
        (None, Some(region)) => endpoint::iam(region),
        (None, None) => None,
    };
    if let Some(p) = &raw.project_id {
        check_project_id("cloud.project_id", p)?;
    }
    if let Some(p) = &raw.ca_file {
        check_path("cloud.ca_file", p)?;
    }
    Ok(Cloud {
        region: raw.region.clone(),
        endpoint,
        iam_endpoint,
        ca_file: raw.ca_file.clone(),
    })
}

fn https_url(key: &str, value: &str) -> Result<String, ConfigError> {
    let v = value.trim().trim_end_matches('/');
    let rest = v.strip_prefix("https://").ok_or_else(|| {
        err(
            key,
            format!("{value:?} must be an https:// URL; credentials are never sent in clear text"),
        )
    })?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Err(err(
            key,
            format!("{value:?} must be a bare https://host[:port], without a path"),
        ));
    }
    Ok(v.to_string())
}

fn check_project_id(key: &str, p: &str) -> Result<(), ConfigError> {
    if p.is_empty()
        || !p
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(err(
            key,
            format!("{p:?} is not a project ID (letters, digits, '-' and '_' only)"),
        ));
    }
    Ok(())
}

fn validate_sync(raw: &RawSync, base_dir: &Path) -> Result<SyncSettings, ConfigError> {
    let positive = |key: &str, v: Option<Dur>, default: Duration| {
        let d = v.map(|d| d.0).unwrap_or(default);
        if d.is_zero() {
            Err(err(key, "must be greater than zero"))
        } else {
            Ok(d)
        }
    };
    if let Some(p) = &raw.state_dir {
        check_path("sync.state_dir", p)?;
    }
    let concurrency = match raw.concurrency {
        None => DEFAULT_CONCURRENCY,
        Some(n) if (1..=1024).contains(&n) => n as usize,
        Some(n) => {
            return Err(err(
                "sync.concurrency",
                format!("{n} is out of range; use 1 to 1024"),
            ));
        }
    };
    Ok(SyncSettings {
        interval: positive("sync.interval", raw.interval, DEFAULT_INTERVAL)?,
        jitter: raw.jitter.map(|d| d.0).unwrap_or(DEFAULT_JITTER),
        timeout: positive("sync.timeout", raw.timeout, DEFAULT_TIMEOUT)?,
        max_backoff: positive("sync.max_backoff", raw.max_backoff, DEFAULT_MAX_BACKOFF)?,
        concurrency,
        state_dir: raw
            .state_dir
            .as_ref()
            .map(|p| base_dir.join(p))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
        expiry_warning: raw
            .expiry_warning
            .map(|d| d.0)
            .unwrap_or(DEFAULT_EXPIRY_WARNING),
    })
}

fn validate_instance(
    key: &str,
    raw: &RawInstance,
    default_project: Option<&str>,
    base_dir: &Path,
) -> Result<Instance, ConfigError> {
    if raw.id.is_empty()
        || !raw
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(err(
            format!("{key}.id"),
            format!(
                "{:?} is not a DDS instance ID (letters, digits, '-' and '_' only)",
                raw.id
            ),
        ));
    }
    if let Some(n) = &raw.name
        && n.contains('\0')
    {
        return Err(err(
            format!("{key}.name"),
            "contains a NUL character, which a hook's environment cannot hold",
        ));
    }
    let project_id = match (&raw.project_id, default_project) {
        (Some(p), _) => {
            check_project_id(&format!("{key}.project_id"), p)?;
            p.clone()
        }
        (None, Some(p)) => p.to_string(),
        (None, None) => {
            return Err(err(
                format!("{key}.project_id"),
                "no project ID; set cloud.project_id or this instance's project_id",
            ));
        }
    };
    let mut outputs = Vec::new();
    for (category, path) in [
        (Category::International, &raw.international),
        (Category::National, &raw.national),
    ] {
        if let Some(p) = path {
            let k = format!("{key}.{category}");
            if p.as_os_str().is_empty() {
                return Err(err(k, "must not be empty"));
            }
            check_path(&k, p)?;
            if p.file_name().is_none() || p.to_string_lossy().ends_with('/') {
                return Err(err(k, format!("{} is not a file path", p.display())));
            }
            outputs.push(Output {
                category,
                path: normalize(&base_dir.join(p)),
            });
        }
    }
    if outputs.is_empty() {
        return Err(err(
            key,
            "no output; set international, national, or both, to the file path to write",
        ));
    }
    let mode = match &raw.mode {
        None => None,
        Some(m) => Some(check_mode(&format!("{key}.mode"), m)?),
    };
    for (field, v) in [("owner", &raw.owner), ("group", &raw.group)] {
        if let Some(NameOrId::Name(n)) = v
            && (n.is_empty() || n.contains([':', '/', '\n', '\0']))
        {
            return Err(err(
                format!("{key}.{field}"),
                format!("{n:?} is not a valid {field} name"),
            ));
        }
    }
    let on_change = match &raw.on_change {
        None => None,
        Some(argv) if argv.is_empty() || argv[0].trim().is_empty() => {
            return Err(err(
                format!("{key}.on_change"),
                "must be a non-empty argv list, for example [\"/usr/bin/systemctl\", \"reload\", \"app\"]",
            ));
        }
        Some(argv) => Some(validate_argv(&format!("{key}.on_change"), argv, base_dir)?),
    };
    let hook_timeout = match raw.hook_timeout {
        None => DEFAULT_HOOK_TIMEOUT,
        Some(Dur(d)) if d.is_zero() => {
            return Err(err(
                format!("{key}.hook_timeout"),
                "must be greater than zero",
            ));
        }
        Some(Dur(d)) => d,
    };
    let reload_signal = validate_reload_signal(key, raw, on_change.is_some(), base_dir)?;
    Ok(Instance {
        id: raw.id.clone(),
        name: raw.name.clone().filter(|n| !n.is_empty()),
        project_id,
        outputs,
        perms: Perms {
            mode,
            owner: raw.owner.clone(),
            group: raw.group.clone(),
            uid: None,
            gid: None,
        },
        on_change,
        hook_timeout,
        reload_signal,
        allow_non_ca: raw.allow_non_ca.unwrap_or(false),
    })
}

/// `reload_signal` and `pidfile` go together, and replace `on_change` (one
/// reload action per instance, so "delivered" has one meaning; a script in
/// `on_change` can still signal a process and do more).
fn validate_reload_signal(
    key: &str,
    raw: &RawInstance,
    has_on_change: bool,
    base_dir: &Path,
) -> Result<Option<ReloadSignal>, ConfigError> {
    let (name, pidfile) = match (&raw.reload_signal, &raw.pidfile) {
        (None, None) if raw.reload_signal_any_owner.is_some() => {
            return Err(err(
                format!("{key}.reload_signal_any_owner"),
                "only applies with reload_signal and pidfile",
            ));
        }
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(err(
                format!("{key}.pidfile"),
                "reload_signal needs pidfile, the file holding the PID to signal, for example \"/run/app.pid\"",
            ));
        }
        (None, Some(_)) => {
            return Err(err(
                format!("{key}.reload_signal"),
                "pidfile needs reload_signal, for example \"SIGHUP\"",
            ));
        }
        (Some(n), Some(p)) => (n, p),
    };
    if has_on_change {
        return Err(err(
            format!("{key}.reload_signal"),
            "set either on_change or reload_signal, not both; to do both, signal the process from the on_change command",
        ));
    }
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    use nix::sys::signal::Signal;
    let signal = full
        .parse::<Signal>()
        .ok()
        .filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP))
        .ok_or_else(|| {
            err(
                format!("{key}.reload_signal"),
                format!(
                    "{name:?} is not a signal a process can handle; use a name such as \"SIGHUP\" or \"SIGUSR1\""
                ),
            )
        })?;
    if pidfile.as_os_str().is_empty() {
        return Err(err(format!("{key}.pidfile"), "must not be empty"));
    }
    check_path(&format!("{key}.pidfile"), pidfile)?;
    Ok(Some(ReloadSignal {
        signal,
        pidfile: base_dir.join(pidfile),
        any_owner: raw.reload_signal_any_owner.unwrap_or(false),
    }))
}

/// A path holding a NUL byte can be written in TOML (`"\u0000"`) but no
/// system call takes it: refused here rather than failing at run time.
pub(crate) fn check_path(key: &str, p: &Path) -> Result<(), ConfigError> {
    use std::os::unix::ffi::OsStrExt;
    if p.as_os_str().as_bytes().contains(&0) {
        return Err(err(
            key,
            format!(
                "{:?} contains a NUL character, which no path can hold",
                p.display().to_string()
            ),
        ));
    }
    Ok(())
}

/// `on_change`: no NUL anywhere, and a program given by a relative path with
/// a slash (`"./reload.sh"`, `"bin/reload"`) is anchored at the config file's
/// directory like every other relative path. A bare name (`"systemctl"`) is
/// left to the PATH search at run time, as a shell would do.
fn validate_argv(key: &str, argv: &[String], base_dir: &Path) -> Result<Vec<String>, ConfigError> {
    for (n, arg) in argv.iter().enumerate() {
        if arg.contains('\0') {
            return Err(err(
                format!("{key}[{n}]"),
                "contains a NUL character, which no program argument can hold",
            ));
        }
    }
    let mut argv = argv.to_vec();
    let program = Path::new(&argv[0]);
    if argv[0].contains('/') && program.is_relative() {
        let anchored = normalize(&base_dir.join(program));
        argv[0] = anchored
            .to_str()
            .ok_or_else(|| {
                err(
                    format!("{key}[0]"),
                    format!(
                        "{:?} is relative to the config file's directory, whose path is not UTF-8; give an absolute path",
                        argv[0]
                    ),
                )
            })?
            .to_string();
    }
    Ok(argv)
}

/// `mode`: an octal permission mode for a certificate. The setuid, setgid
/// and sticky bits mean nothing for it (and setuid on a file others can
/// write is dangerous), and `0000` makes it unreadable by its consumers: both
/// are refused.
fn check_mode(key: &str, m: &str) -> Result<u32, ConfigError> {
    let mode = parse_mode(m).ok_or_else(|| {
        err(
            key,
            format!("{m:?} is not an octal file mode such as \"0644\""),
        )
    })?;
    if mode & 0o7000 != 0 {
        return Err(err(
            key,
            format!(
                "{m:?} sets the setuid, setgid or sticky bit, which a certificate never needs; use a mode such as \"0644\""
            ),
        ));
    }
    if mode == 0 {
        return Err(err(
            key,
            format!("{m:?} makes the file unreadable to its users; use a mode such as \"0644\""),
        ));
    }
    Ok(mode)
}

/// Parses "0644", "644" or "0o644" into a permission mode.
fn parse_mode(s: &str) -> Option<u32> {
    let digits = s.trim().trim_start_matches("0o");
    if digits.is_empty() || digits.len() > 5 {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o7777)
}

/// Removes `.` and `..` components lexically, so that two spellings of one
/// path are seen as one when checking for duplicate outputs.
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Step 3: resolve against the system.
// ---------------------------------------------------------------------------

/// Resolves owner and group names, checks that secret files hold a secret
/// and secret variables a value, and that no two outputs are one file
/// through a symlinked directory.
pub fn resolve(mut config: Config) -> Result<Config, ConfigError> {
    auth::resolve(&config.auth)?;
    check_outputs_distinct(&config)?;
    for (i, inst) in config.instances.iter_mut().enumerate() {
        if let Some(o) = &inst.perms.owner {
            inst.perms.uid = Some(match o {
                NameOrId::Id(n) => *n,
                NameOrId::Name(n) => lookup_user(n).ok_or_else(|| {
                    err(
                        format!("instances[{i}].owner"),
                        format!("no user named {n:?} on this system"),
                    )
                })?,
            });
        }
        if let Some(g) = &inst.perms.group {
            inst.perms.gid = Some(match g {
                NameOrId::Id(n) => *n,
                NameOrId::Name(n) => lookup_group(n).ok_or_else(|| {
                    err(
                        format!("instances[{i}].group"),
                        format!("no group named {n:?} on this system"),
                    )
                })?,
            });
        }
    }
    Ok(config)
}

/// Reads a secret file named by `key` the way the config file is read, and
/// checks that it holds a secret: UTF-8, and not empty or only whitespace
/// (what would be sent after trimming). The content is never put in an error.
fn check_secret_file(key: &str, p: &Path) -> Result<(), ConfigError> {
    let bytes = match readfile::read_regular(p, SMALL_FILE_LIMIT, Links::Follow) {
        Ok(Some(b)) => b,
        Ok(None) => {
            return Err(err(
                key,
                format!("cannot read {}: it does not exist", p.display()),
            ));
        }
        Err(e) => {
            return Err(err(
                key,
                format!("cannot read {}: {}", p.display(), read_problem(&e)),
            ));
        }
    };
    match std::str::from_utf8(&bytes) {
        Err(_) => Err(err(key, format!("{} is not UTF-8 text", p.display()))),
        Ok(t) if t.trim().is_empty() => Err(err(
            key,
            format!(
                "{} is empty (or only whitespace); it must hold the secret",
                p.display()
            ),
        )),
        Ok(_) => Ok(()),
    }
}

/// Where an output really is: the directory it is written into, identified
/// by device and inode (so a symlinked directory or a second mount of it is
/// the same), and the file name. A directory that does not exist yet is
/// identified through its nearest existing ancestor plus the rest of the path.
fn output_location(path: &Path) -> (u64, u64, PathBuf) {
    use std::os::unix::fs::MetadataExt;
    let mut rest = Vec::new();
    let mut cur = path;
    while let Some(parent) = cur.parent() {
        rest.push(cur.file_name().map(PathBuf::from).unwrap_or_default());
        if let Ok(m) = std::fs::metadata(parent) {
            let tail: PathBuf = rest.iter().rev().collect();
            return (m.dev(), m.ino(), tail);
        }
        cur = parent;
    }
    (0, 0, path.to_path_buf())
}

/// Two outputs that are one file through a symlinked (or twice mounted)
/// directory would overwrite each other: refused, naming both.
fn check_outputs_distinct(config: &Config) -> Result<(), ConfigError> {
    let mut seen: HashMap<(u64, u64, PathBuf), (String, &Path)> = HashMap::new();
    for (i, inst) in config.instances.iter().enumerate() {
        for out in &inst.outputs {
            let key = format!("instances[{i}].{}", out.category);
            if let Some((other, other_path)) =
                seen.insert(output_location(&out.path), (key.clone(), &out.path))
            {
                return Err(err(
                    key,
                    format!(
                        "{} is the same file as {} ({other}), through a symbolic link or a mount; every output needs its own file",
                        out.path.display(),
                        other_path.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn lookup_user(name: &str) -> Option<u32> {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
}

fn lookup_group(name: &str) -> Option<u32> {
    nix::unistd::Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

/// A config file as read, and the config made from exactly those bytes. The
/// daemon's change tracker starts from `bytes`, so that an edit landing after
/// the read is seen as a change and never mistaken for the running config.
pub struct Loaded {
    pub config: Config,
    pub bytes: Vec<u8>,
}

/// By hand: the raw bytes may hold inline secrets, so only their length shows.
impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("config", &self.config)
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .finish()
    }
}

/// Reads the config file: a regular file (a symlink to one is followed, as
/// Kubernetes mounts them) of at most [`SMALL_FILE_LIMIT`] bytes. A FIFO, a
/// device, a directory or a bigger file is an error naming what was found,
/// returned at once: the read never blocks and never grows without bound.
/// Blocking I/O: call it off the runtime thread (see [`read_async`]).
pub fn read(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let problem = |message: String| ConfigError {
        file: path.to_path_buf(),
        key: None,
        line: None,
        message,
    };
    match readfile::read_regular(path, SMALL_FILE_LIMIT, Links::Follow) {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(problem(
            "cannot read the config file: it does not exist".into(),
        )),
        Err(e) => Err(problem(format!(
            "cannot read the config file: {}",
            read_problem(&e)
        ))),
    }
}

/// [`read`] on the blocking pool.
pub async fn read_async(path: PathBuf) -> Result<Vec<u8>, ConfigError> {
    let p = path.clone();
    tokio::task::spawn_blocking(move || read(&p))
        .await
        .unwrap_or_else(|e| {
            Err(ConfigError {
                file: path,
                key: None,
                line: None,
                message: format!("cannot read the config file: {e}"),
            })
        })
}

/// An I/O error of [`readfile`] in words: "it is a FIFO, not a regular
/// file", "it is larger than 1048576 bytes", or the system's message.
fn read_problem(e: &std::io::Error) -> String {
    let text = e.to_string();
    if text.starts_with("is ") {
        format!("it {text}")
    } else {
        text
    }
}

/// Parses, validates and resolves the config in `bytes`, read from `path`
/// (which names the file in errors and anchors relative paths). Consults the
/// system (see [`resolve`]): call it off the runtime thread.
pub fn load_from(path: &Path, bytes: &[u8]) -> Result<Config, ConfigError> {
    let with_file = |mut e: ConfigError| {
        e.file = path.to_path_buf();
        e
    };
    let text = std::str::from_utf8(bytes).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        key: None,
        line: None,
        message: format!("cannot read the config file: it is not UTF-8 text ({e})"),
    })?;
    let base_dir = crate::output::parent_dir(path);
    let base_dir = std::path::absolute(&base_dir).unwrap_or(base_dir);
    let raw = parse(text).map_err(with_file)?;
    if raw.auth.as_ref().is_some_and(RawAuth::has_inline_secret) {
        auth::warn_if_readable_by_others(path, "the config file");
    }
    let sdk_env = SdkEnv::capture(matches!(raw.auth, None | Some(RawAuth::Auto { .. })));
    let config = validate_with_env(raw, &base_dir, &sdk_env).map_err(with_file)?;
    resolve(config).map_err(with_file)
}

/// Reads a config file once, then parses, validates and resolves those bytes.
/// Blocking: see [`load_async`].
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let bytes = read(path)?;
    let config = load_from(path, &bytes)?;
    Ok(Loaded { config, bytes })
}

/// [`load`] on the blocking pool, so that nothing it reads or looks up can
/// stall the runtime thread.
pub async fn load_async(path: PathBuf) -> Result<Loaded, ConfigError> {
    let p = path.clone();
    tokio::task::spawn_blocking(move || load(&p))
        .await
        .unwrap_or_else(|e| {
            Err(ConfigError {
                file: path,
                key: None,
                line: None,
                message: format!("cannot load the config file: {e}"),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[cloud]
region = "cn-north-4"
project_id = "p1"
[auth]
method = "token"
token = "t"
[[instances]]
id = "i1"
international = "/tmp/x/a.crt"
"#;

    fn check(text: &str) -> Result<Config, ConfigError> {
        validate(parse(text)?, Path::new("/base"))
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = check(MINIMAL).unwrap();
        assert_eq!(c.cloud.endpoint, "https://dds.cn-north-4.myhuaweicloud.com");
        assert_eq!(
            c.cloud.iam_endpoint.as_deref(),
            Some("https://iam.cn-north-4.myhuaweicloud.com")
        );
        assert_eq!(c.sync.interval, Duration::from_secs(3600));
        assert_eq!(c.sync.jitter, Duration::from_secs(300));
        assert_eq!(c.sync.concurrency, 8);
        assert_eq!(c.instances[0].project_id, "p1");
        assert_eq!(c.instances[0].hook_timeout, Duration::from_secs(30));
        assert_eq!(c.instances[0].outputs.len(), 1);
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let text = include_str!("../config/example.toml");
        let c = check(text).unwrap();
        assert_eq!(c.instances[0].perms.mode, Some(0o644));
        assert_eq!(c.instances[0].outputs.len(), 2);
    }

    #[test]
    fn misspelt_key_is_named_with_its_line() {
        let text = MINIMAL.replace("[[instances]]", "[sync]\nintervall = \"1h\"\n[[instances]]");
        let e = check(&text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("sync.intervall"));
        assert_eq!(e.line, Some(9));
        assert!(e.message.contains("intervall"), "{e}");
    }

    #[test]
    fn bad_duration_names_the_key() {
        let text = MINIMAL.replace(
            "[[instances]]",
            "[sync]\ninterval = \"1 fortnight\"\n[[instances]]",
        );
        let e = check(&text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("sync.interval"));
        assert!(e.message.contains("1 fortnight"), "{e}");
    }

    #[test]
    fn bad_mode_names_the_key() {
        let text = format!("{MINIMAL}mode = \"0999\"\n");
        let e = check(&text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("instances[0].mode"));
    }

    #[test]
    fn modes_parse() {
        assert_eq!(parse_mode("0644"), Some(0o644));
        assert_eq!(parse_mode("600"), Some(0o600));
        assert_eq!(parse_mode("0o640"), Some(0o640));
        assert_eq!(parse_mode("rw-r--r--"), None);
        assert_eq!(parse_mode("17777"), None);
        assert_eq!(parse_mode(""), None);
    }

    #[test]
    fn unknown_auth_method_is_named() {
        let text = MINIMAL.replace("method = \"token\"", "method = \"magic\"");
        let e = check(&text).unwrap_err();
        assert!(e.key.as_deref().unwrap_or("").starts_with("auth"), "{e}");
        assert!(e.message.contains("magic"), "{e}");
    }

    #[test]
    fn missing_instance_id_is_named() {
        let text = MINIMAL.replace("id = \"i1\"\n", "");
        let e = check(&text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("instances[0]"));
        assert!(e.message.contains("id"), "{e}");
    }

    #[test]
    fn two_outputs_on_one_path_are_refused() {
        let text =
            format!("{MINIMAL}\n[[instances]]\nid = \"i2\"\nnational = \"/tmp/x/./b/../a.crt\"\n");
        let e = check(&text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("instances[1].national"));
        assert!(e.message.contains("instances[0].international"), "{e}");
    }

    #[test]
    fn instance_without_output_is_refused() {
        let text = MINIMAL.replace("international = \"/tmp/x/a.crt\"\n", "");
        let e = check(&text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("instances[0]"));
    }

    #[test]
    fn broken_toml_has_a_line() {
        let e = check("[cloud\nregion = 1").unwrap_err();
        assert_eq!(e.line, Some(1));
    }

    #[test]
    fn unknown_region_without_endpoint_is_named() {
        let e = check(&MINIMAL.replace("cn-north-4", "mars-1")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("cloud.region"));
        assert!(e.message.contains("mars-1"));
        let ok = MINIMAL.replace(
            "region = \"cn-north-4\"",
            "region = \"mars-1\"\nendpoint = \"https://127.0.0.1:8443/\"",
        );
        assert_eq!(check(&ok).unwrap().cloud.endpoint, "https://127.0.0.1:8443");
    }

    #[test]
    fn plain_http_endpoint_is_refused() {
        let text = MINIMAL.replace(
            "region = \"cn-north-4\"",
            "endpoint = \"http://127.0.0.1:80\"",
        );
        let e = check(&text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("cloud.endpoint"));
    }

    #[test]
    fn token_and_token_file_are_exclusive() {
        let text = MINIMAL.replace("token = \"t\"", "token = \"t\"\ntoken_file = \"/x\"");
        let e = check(&text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("auth.token"));
    }

    #[test]
    fn missing_token_file_is_a_config_error() {
        let text = MINIMAL.replace("token = \"t\"", "token_file = \"/nonexistent/token\"");
        let e = resolve(check(&text).unwrap()).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("auth.token_file"));
        assert!(e.message.contains("/nonexistent/token"));
    }

    #[test]
    fn relative_paths_are_anchored_at_the_config_dir() {
        let text = MINIMAL.replace("/tmp/x/a.crt", "out/a.crt");
        let c = check(&text).unwrap();
        assert_eq!(
            c.instances[0].outputs[0].path,
            PathBuf::from("/base/out/a.crt")
        );
    }

    #[test]
    fn server_is_off_by_default_and_listen_is_checked() {
        let c = check(MINIMAL).unwrap();
        assert_eq!(c.server.listen, None);
        assert_eq!(c.sync.expiry_warning, Duration::from_secs(30 * 86400));
        let text = format!("{MINIMAL}\n[server]\nlisten = \"127.0.0.1:9464\"\n");
        assert_eq!(
            check(&text).unwrap().server.listen,
            Some("127.0.0.1:9464".parse().unwrap())
        );
        let text = format!("{MINIMAL}\n[server]\nlisten = \"localhost\"\n");
        let e = check(&text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("server.listen"));
        let text = format!("{MINIMAL}\n[server]\nport = 1\n");
        assert_eq!(
            check(&text).unwrap_err().key.as_deref(),
            Some("server.port")
        );
    }

    #[test]
    fn expiry_warning_is_a_duration() {
        let text = MINIMAL.replace(
            "[[instances]]",
            "[sync]\nexpiry_warning = \"14d\"\n[[instances]]",
        );
        assert_eq!(
            check(&text).unwrap().sync.expiry_warning,
            Duration::from_secs(14 * 86400)
        );
    }

    #[test]
    fn reload_signal_needs_a_pidfile_and_excludes_on_change() {
        let c = check(&format!(
            "{MINIMAL}reload_signal = \"hup\"\npidfile = \"run/app.pid\"\n"
        ))
        .unwrap();
        let r = c.instances[0].reload_signal.as_ref().unwrap();
        assert_eq!(r.signal, nix::sys::signal::Signal::SIGHUP);
        assert_eq!(r.pidfile, PathBuf::from("/base/run/app.pid"));
        assert!(c.instances[0].has_hook());

        let e = check(&format!("{MINIMAL}reload_signal = \"SIGHUP\"\n")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("instances[0].pidfile"));
        let e = check(&format!("{MINIMAL}pidfile = \"/run/a.pid\"\n")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("instances[0].reload_signal"));
        let e = check(&format!(
            "{MINIMAL}reload_signal = \"SIGHUP\"\npidfile = \"/a\"\non_change = [\"/bin/true\"]\n"
        ))
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("instances[0].reload_signal"));
        for bad in ["SIGKILL", "SIGBOGUS", "", "9"] {
            let e = check(&format!(
                "{MINIMAL}reload_signal = \"{bad}\"\npidfile = \"/a\"\n"
            ))
            .unwrap_err();
            assert_eq!(
                e.key.as_deref(),
                Some("instances[0].reload_signal"),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_nul_in_a_path_or_argument_is_refused_naming_the_key() {
        let nul = "\\u0000";
        let cases = [
            (
                MINIMAL.replace("/tmp/x/a.crt", &format!("/tmp/x/a{nul}.crt")),
                "instances[0].international",
            ),
            (
                format!("{MINIMAL}on_change = [\"/bin/echo\", \"a{nul}b\"]\n"),
                "instances[0].on_change[1]",
            ),
            (
                format!("{MINIMAL}reload_signal = \"HUP\"\npidfile = \"/run/a{nul}.pid\"\n"),
                "instances[0].pidfile",
            ),
            (format!("{MINIMAL}name = \"a{nul}\"\n"), "instances[0].name"),
            (
                format!("{MINIMAL}owner = \"a{nul}\"\n"),
                "instances[0].owner",
            ),
            (
                MINIMAL.replace(
                    "[[instances]]",
                    &format!("[sync]\nstate_dir = \"/s{nul}\"\n[[instances]]"),
                ),
                "sync.state_dir",
            ),
            (
                MINIMAL.replace("[auth]", &format!("ca_file = \"/c{nul}\"\n[auth]")),
                "cloud.ca_file",
            ),
            (
                MINIMAL.replace("token = \"t\"", &format!("token_file = \"/t{nul}\"")),
                "auth.token_file",
            ),
        ];
        for (text, key) in cases {
            let e = check(&text).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{e}");
            assert!(
                e.message.contains("NUL") || e.message.contains("\\0"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_relative_hook_program_is_anchored_at_the_config_dir_and_a_bare_name_left_to_path() {
        let program = |argv: &str| {
            check(&format!("{MINIMAL}on_change = {argv}\n"))
                .unwrap()
                .instances[0]
                .on_change
                .clone()
                .unwrap()
        };
        assert_eq!(program(r#"["./reload.sh", "x"]"#), ["/base/reload.sh", "x"]);
        assert_eq!(program(r#"["hooks/../bin/reload"]"#), ["/base/bin/reload"]);
        assert_eq!(
            program(r#"["systemctl", "reload", "app"]"#),
            ["systemctl", "reload", "app"]
        );
        assert_eq!(program(r#"["/bin/sh", "./x.sh"]"#), ["/bin/sh", "./x.sh"]);
    }

    #[test]
    fn a_mode_with_special_bits_or_no_bits_is_refused() {
        for bad in ["4644", "2644", "1644", "06755", "0000", "0"] {
            let e = check(&format!("{MINIMAL}mode = \"{bad}\"\n")).unwrap_err();
            assert_eq!(e.key.as_deref(), Some("instances[0].mode"), "{bad}");
            assert!(e.message.contains(bad), "{e}");
        }
        for good in ["0644", "0600", "0444", "640"] {
            assert!(
                check(&format!("{MINIMAL}mode = \"{good}\"\n")).is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn two_outputs_that_are_one_file_through_a_symlinked_dir_are_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("real")).unwrap();
        std::os::unix::fs::symlink(d.path().join("real"), d.path().join("link")).unwrap();
        let text = |a: &str, b: &str| {
            MINIMAL.replace(
                "international = \"/tmp/x/a.crt\"",
                &format!(
                    "international = \"{a}\"\n\n[[instances]]\nid = \"i2\"\nnational = \"{b}\""
                ),
            )
        };
        let load =
            |a: &str, b: &str| resolve(validate(parse(&text(a, b)).unwrap(), d.path()).unwrap());
        // Through a symlinked directory, existing or not yet created below it.
        for (a, b) in [
            ("real/a.crt", "link/a.crt"),
            ("real/new/a.crt", "link/new/a.crt"),
        ] {
            let e = load(a, b).unwrap_err();
            assert_eq!(e.key.as_deref(), Some("instances[1].national"), "{e}");
            assert!(e.message.contains("instances[0].international"), "{e}");
        }
        // Same directory, other names; other directories: fine.
        assert!(load("real/a.crt", "link/b.crt").is_ok());
        assert!(load("real/new/a.crt", "link/other/a.crt").is_ok());
    }

    #[test]
    fn reload_signal_any_owner_defaults_to_false_and_needs_reload_signal() {
        let sig = format!("{MINIMAL}reload_signal = \"SIGHUP\"\npidfile = \"/a\"\n");
        let c = check(&sig).unwrap();
        assert!(!c.instances[0].reload_signal.as_ref().unwrap().any_owner);
        let c = check(&format!("{sig}reload_signal_any_owner = true\n")).unwrap();
        assert!(c.instances[0].reload_signal.as_ref().unwrap().any_owner);
        let e = check(&format!("{MINIMAL}reload_signal_any_owner = true\n")).unwrap_err();
        assert_eq!(
            e.key.as_deref(),
            Some("instances[0].reload_signal_any_owner")
        );
        assert!(e.message.contains("reload_signal"), "{e}");
    }

    #[test]
    fn a_loaded_config_never_shows_its_raw_bytes_in_debug() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        let text = MINIMAL.replace("token = \"t\"", "token = \"s3cr3t-token-value\"");
        std::fs::write(&p, &text).unwrap();
        let loaded = load(&p).unwrap();
        let shown = format!("{loaded:?}");
        // Neither as text nor as the list of byte values a derived Debug prints.
        assert!(!shown.contains("s3cr3t-token-value"), "{shown}");
        let secret_bytes = format!("{:?}", b"s3cr3t-token-value");
        let secret_bytes = &secret_bytes[1..secret_bytes.len() - 1];
        assert!(!shown.contains(secret_bytes), "{shown}");
        assert!(
            shown.contains(&format!("<{} bytes>", text.len())),
            "{shown}"
        );
    }

    #[test]
    fn inline_token_never_shows_in_debug() {
        let text = MINIMAL.replace("token = \"t\"", "token = \"s3cr3t-token-value\"");
        let c = check(&text).unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t-token-value"));
    }
}
