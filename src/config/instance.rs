//! Step 2 for one `[[instances]]` entry: its ID and project, its outputs
//! (and its Java truststore), permissions and owner, and its reload action
//! (`on_change`, or `reload_signal` with `pidfile`). Pure, like the rest of
//! validation.

use std::path::{Path, PathBuf};

use super::auth::secret_at;
use super::check::{check_path, check_project_id, keep_previous, normalize};
use super::types::{
    Category, DEFAULT_HOOK_TIMEOUT, Instance, Output, Perms, ReloadSignal, SyncSettings, Truststore,
};
use super::{ConfigError, Dur, NameOrId, RawInstance, SecretSource, err};
use crate::catalog::Service;
use crate::secret::Secret;
use crate::truststore::{self, Profile};

pub(super) fn validate_instance(
    key: &str,
    raw: &RawInstance,
    default_project: Option<&str>,
    sync: &SyncSettings,
    base_dir: &Path,
) -> Result<Instance, ConfigError> {
    let service = validate_service(key, raw)?;
    check_id_and_name(key, raw, service)?;
    let project_id = project_id(key, raw, default_project)?;
    let outputs = validate_outputs(key, raw, base_dir)?;
    let perms = validate_perms(key, raw)?;
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
        service,
        name: raw.name.clone().filter(|n| !n.is_empty()),
        project_id,
        outputs,
        perms,
        on_change,
        hook_timeout,
        reload_signal,
        allow_non_ca: raw.allow_non_ca.unwrap_or(false),
        // Needs `[sync]`'s default interval: filled in by `validate`.
        probe: None,
        keep_previous: keep_previous(&format!("{key}.keep_previous"), raw.keep_previous)?
            .unwrap_or(sync.keep_previous),
    })
}

/// `id`: the service's instance ID alphabet; `name`: anything a hook's
/// environment can hold.
fn check_id_and_name(key: &str, raw: &RawInstance, service: Service) -> Result<(), ConfigError> {
    if raw.id.is_empty()
        || !raw
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(err(
            format!("{key}.id"),
            format!(
                "{:?} is not a {} instance ID (letters, digits, '-' and '_' only)",
                raw.id,
                service.display()
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
    Ok(())
}

/// `project_id`: the instance's own, else `cloud.project_id`.
fn project_id(
    key: &str,
    raw: &RawInstance,
    default_project: Option<&str>,
) -> Result<String, ConfigError> {
    match (&raw.project_id, default_project) {
        (Some(p), _) => {
            check_project_id(&format!("{key}.project_id"), p)?;
            Ok(p.clone())
        }
        (None, Some(p)) => Ok(p.to_string()),
        (None, None) => Err(err(
            format!("{key}.project_id"),
            "no project ID; set cloud.project_id or this instance's project_id",
        )),
    }
}

/// The files an instance writes: a PEM file per category, and a truststore;
/// at least one.
fn validate_outputs(
    key: &str,
    raw: &RawInstance,
    base_dir: &Path,
) -> Result<Vec<Output>, ConfigError> {
    let mut outputs = Vec::new();
    for (category, path) in [
        (Category::International, &raw.international),
        (Category::National, &raw.national),
    ] {
        if let Some(p) = path {
            let path = output_path(&format!("{key}.{category}"), p, base_dir)?;
            outputs.push(Output::pem(category, path));
        }
    }
    outputs.extend(validate_truststore(key, raw, base_dir)?);
    if outputs.is_empty() {
        return Err(err(
            key,
            "no output; set international, national, or both, to the file path to write (or truststore, for Java clients)",
        ));
    }
    Ok(outputs)
}

/// `mode`, `owner` and `group` as written (names are resolved later).
fn validate_perms(key: &str, raw: &RawInstance) -> Result<Perms, ConfigError> {
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
    Ok(Perms {
        mode,
        owner: raw.owner.clone(),
        group: raw.group.clone(),
        uid: None,
        gid: None,
    })
}

/// `service`: a name of the service table (`dds` when not set), and no
/// `national` output for a service that serves no national certificate.
fn validate_service(key: &str, raw: &RawInstance) -> Result<Service, ConfigError> {
    let service = match &raw.service {
        None => Service::Dds,
        Some(name) => Service::from_name(name).ok_or_else(|| {
            err(
                format!("{key}.service"),
                format!(
                    "{name:?} is not a service this daemon knows; use one of: {}",
                    Service::names()
                ),
            )
        })?,
    };
    if raw.national.is_some() && !service.serves(Category::National) {
        return Err(err(
            format!("{key}.national"),
            format!(
                "{} ({service}) serves no national (SM-series) certificate; write its standard certificate with international (or truststore)",
                service.display()
            ),
        ));
    }
    Ok(service)
}

/// An output's path: not empty, no NUL, a file (not a directory), anchored
/// at the config file's directory.
fn output_path(key: &str, p: &Path, base_dir: &Path) -> Result<PathBuf, ConfigError> {
    if p.as_os_str().is_empty() {
        return Err(err(key, "must not be empty"));
    }
    check_path(key, p)?;
    if p.file_name().is_none() || p.to_string_lossy().ends_with('/') {
        return Err(err(key, format!("{} is not a file path", p.display())));
    }
    Ok(normalize(&base_dir.join(p)))
}

/// `truststore` and the keys that only apply with it: its password (one of
/// `truststore_password`, `_file`, `_env`; `changeit`, Java's convention
/// for truststores, when none is set) and `truststore_profile`.
fn validate_truststore(
    key: &str,
    raw: &RawInstance,
    base_dir: &Path,
) -> Result<Option<Output>, ConfigError> {
    let Some(path) = &raw.truststore else {
        let stray = [
            ("truststore_password", raw.truststore_password.is_some()),
            (
                "truststore_password_file",
                raw.truststore_password_file.is_some(),
            ),
            (
                "truststore_password_env",
                raw.truststore_password_env.is_some(),
            ),
            ("truststore_profile", raw.truststore_profile.is_some()),
        ];
        if let Some((name, _)) = stray.iter().find(|(_, set)| *set) {
            return Err(err(
                format!("{key}.{name}"),
                "only applies with truststore, the path of the Java truststore to write",
            ));
        }
        return Ok(None);
    };
    let tkey = format!("{key}.truststore");
    let path = output_path(&tkey, path, base_dir)?;
    let pkey = format!("{key}.truststore_password");
    let password = secret_at(
        &pkey,
        "truststore_password",
        raw.truststore_password.clone(),
        raw.truststore_password_file.clone(),
        raw.truststore_password_env.clone(),
        base_dir,
    )?
    .unwrap_or_else(|| SecretSource::Inline(Secret::new(truststore::DEFAULT_PASSWORD)));
    if let SecretSource::Inline(s) = &password {
        truststore::check_password(s).map_err(|why| err(&pkey, why))?;
    }
    let profile = match &raw.truststore_profile {
        None => Profile::default(),
        Some(p) => Profile::parse(p).ok_or_else(|| {
            err(
                format!("{key}.truststore_profile"),
                format!(
                    "{p:?} is not a truststore profile; use \"modern\" (the default) or \"legacy\""
                ),
            )
        })?,
    };
    Ok(Some(Output {
        category: Category::International,
        path,
        truststore: Some(Truststore { password, profile }),
    }))
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
pub(super) fn parse_mode(s: &str) -> Option<u32> {
    let digits = s.trim().trim_start_matches("0o");
    if digits.is_empty() || digits.len() > 5 {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o7777)
}
