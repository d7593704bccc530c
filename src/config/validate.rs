//! Step 2, [`validate`]: raw structs to a [`Config`] whose invariants hold.
//! Pure: it consults neither the file system nor the user database. This
//! file holds the top level (`[cloud]`, `[sync]`, `[server]`, duplicate IDs
//! and paths); the checks of single values every section shares are in
//! [`super::check`], one `[[instances]]`
//! entry is checked in [`super::instance`], `[auth]` in [`super::auth`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::check::{check_path, check_project_id, https_url, keep_previous};
use super::instance::validate_instance;
use super::types::*;
use super::{ConfigError, Dur, RawCloud, RawConfig, RawServer, RawSync, SdkEnv, auth, err, probe};
use crate::catalog::{Service, endpoint};

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
        let mut inst = validate_instance(&key, ri, default_project.as_deref(), &sync, base_dir)?;
        inst.probe = probe::validate_probe(&key, ri, &inst.outputs, sync.probe_interval)?;
        if let Some(first) = ids.insert(&ri.id, i) {
            return Err(err(
                format!("{key}.id"),
                format!(
                    "instance {:?} is configured twice (also instances[{first}])",
                    ri.id
                ),
            ));
        }
        for (name, path) in inst.outputs.iter().map(|o| (o.name(), o.path.as_path())) {
            let this = format!("{key}.{name}");
            if let Some(other) = paths.insert(path.to_path_buf(), this.clone()) {
                return Err(err(
                    this,
                    format!(
                        "path {} is also written by {other}; every output needs its own path",
                        path.display()
                    ),
                ));
            }
        }
        instances.push(inst);
    }
    let mut used: Vec<(Service, String)> = Vec::new();
    for (i, inst) in instances.iter().enumerate() {
        if !used.iter().any(|(s, _)| *s == inst.service) {
            used.push((inst.service, format!("instances[{i}].service")));
        }
    }
    cloud.endpoints = service_endpoints(&cloud.endpoints, cloud.region.as_deref(), &used)?;
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
    let written = written_endpoints(raw)?;
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
        // The written ones, until the instances say which services they
        // use ([`service_endpoints`]).
        endpoints: written,
        iam_endpoint,
        ca_file: raw.ca_file.clone(),
    })
}

/// Every endpoint the config writes, checked, by service.
fn written_endpoints(raw: &RawCloud) -> Result<BTreeMap<Service, String>, ConfigError> {
    let mut out = BTreeMap::new();
    if let Some(e) = &raw.endpoint {
        out.insert(Service::Dds, https_url("cloud.endpoint", e)?);
    }
    if let Some(endpoints) = &raw.endpoints {
        for service in Service::ALL {
            if let Some(e) = endpoints.get(service) {
                out.insert(
                    service,
                    https_url(&format!("cloud.endpoints.{service}"), e)?,
                );
            }
        }
        if raw.endpoint.is_some() && endpoints.dds.is_some() {
            return Err(err(
                "cloud.endpoints.dds",
                "cloud.endpoint already sets the DDS endpoint; set one of the two",
            ));
        }
    }
    Ok(out)
}

/// The key a user sets `service`'s endpoint with, as error messages name
/// it: `cloud.endpoint` for DDS (its key from before other services), else
/// `cloud.endpoints.<service>`.
fn endpoint_key(service: Service) -> String {
    match service {
        Service::Dds => "cloud.endpoint".to_string(),
        s => format!("cloud.endpoints.{s}"),
    }
}

/// The endpoint of every service the instances use (`used`: each service
/// with the key of the first instance using it): the one written
/// (`written`, from [`written_endpoints`]), else the SDK's for `region`.
/// Only the services in use are derived, so a region a service does not
/// serve matters only to a config that uses it.
fn service_endpoints(
    written: &BTreeMap<Service, String>,
    region: Option<&str>,
    used: &[(Service, String)],
) -> Result<BTreeMap<Service, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for (service, key) in used {
        let endpoint = match (written.get(service), region) {
            (Some(e), _) => e.clone(),
            (None, Some(region)) => derived_endpoint(*service, region, key)?,
            (None, None) => {
                return Err(err(
                    "cloud.region",
                    format!(
                        "set cloud.region (for example \"cn-north-4\") or {}",
                        endpoint_key(*service)
                    ),
                ));
            }
        };
        out.insert(*service, endpoint);
    }
    Ok(out)
}

/// The SDK's endpoint of `service` in `region`; `key` is the `service` key
/// of the first instance that uses it, named when the service has none there.
fn derived_endpoint(service: Service, region: &str, key: &str) -> Result<String, ConfigError> {
    if !endpoint::REGIONS.contains(&region) {
        return Err(err(
            "cloud.region",
            format!(
                "unknown region {region:?}; use a region the official SDK knows, or set {}",
                endpoint_key(service)
            ),
        ));
    }
    service.endpoint(region).map(str::to_owned).ok_or_else(|| {
        err(
            key,
            format!(
                "{} ({service}) has no endpoint in region {region:?} (the official SDK lists none); set {}, or use another region",
                service.display(),
                endpoint_key(service)
            ),
        )
    })
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
        probe_interval: probe::check_interval(
            "sync.probe_interval",
            raw.probe_interval.map_or(DEFAULT_PROBE_INTERVAL, |d| d.0),
        )?,
        keep_previous: keep_previous("sync.keep_previous", raw.keep_previous)?
            .unwrap_or(DEFAULT_KEEP_PREVIOUS),
    })
}
