//! What a reload changes: a pure comparison of the running config with a new
//! one, which the daemon turns into scheduler commands.
//!
//! * instances **added** start at once (the scheduler does that for new keys);
//! * instances **removed** stop, and their gauges go;
//! * instances **changed** (any of their settings) sync at once, the others
//!   keep their schedule;
//! * a change of `[cloud]` (an endpoint of any service included), `[auth]`
//!   or `sync.timeout`, or of an instance's `service`, means a new API
//!   client, after which every instance syncs at once;
//! * timing (`interval`, `jitter`, `max_backoff`, `concurrency`) applies from
//!   each instance's next round;
//! * a new `server.listen` rebinds the endpoints;
//! * `probe` and `probe_interval` only change what the probes check, and
//!   when: no instance syncs for them.

use crate::config::Config;

/// The difference between two configs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Instance IDs, in the new config's order.
    pub added: Vec<String>,
    /// Instance IDs, in the old config's order.
    pub removed: Vec<String>,
    /// Instance IDs whose settings differ, in the new config's order.
    pub changed: Vec<String>,
    /// `[cloud]`, `[auth]`, `sync.timeout` or an instance's `service`
    /// differ: the client is rebuilt.
    pub client: bool,
    /// `interval`, `jitter`, `max_backoff` or `concurrency` differ.
    pub timing: bool,
    /// `server.listen` differs.
    pub server: bool,
    /// `probe`, an instance's `probe_interval` or `sync.probe_interval`
    /// differ (nothing syncs for that).
    pub probe: bool,
    /// Anything else (e.g. `sync.expiry_warning`, `sync.state_dir`).
    pub other: bool,
}

/// Which instances must sync now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncNow {
    All,
    /// These (possibly none).
    Some(Vec<String>),
}

impl Changes {
    /// Whether the configs are equivalent.
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }

    /// What to sync at once. `forced` (SIGHUP) syncs everything; added
    /// instances are left out, because they start at once anyway.
    pub fn sync_now(&self, forced: bool) -> SyncNow {
        if forced || self.client {
            SyncNow::All
        } else {
            SyncNow::Some(self.changed.clone())
        }
    }

    /// One line for the log.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        let list = |v: &[String]| v.join(", ");
        if !self.added.is_empty() {
            parts.push(format!("added {}", list(&self.added)));
        }
        if !self.removed.is_empty() {
            parts.push(format!("removed {}", list(&self.removed)));
        }
        if !self.changed.is_empty() {
            parts.push(format!("changed {}", list(&self.changed)));
        }
        if self.client {
            parts.push("new cloud/auth settings".into());
        }
        if self.timing {
            parts.push("new timing".into());
        }
        if self.server {
            parts.push("new server.listen".into());
        }
        if self.probe {
            parts.push("new probe settings".into());
        }
        if self.other {
            parts.push("other settings".into());
        }
        if parts.is_empty() {
            "nothing changed".into()
        } else {
            parts.join("; ")
        }
    }
}

/// Compares the running config with a new one.
pub fn diff(old: &Config, new: &Config) -> Changes {
    let find = |c: &Config, id: &str| c.instances.iter().position(|i| i.id == id);
    let mut ch = Changes::default();
    for inst in &new.instances {
        let Some(i) = find(old, &inst.id) else {
            ch.added.push(inst.id.clone());
            continue;
        };
        let was = &old.instances[i];
        if was.service != inst.service {
            ch.client = true;
        }
        if was.probe != inst.probe {
            ch.probe = true;
        }
        let unprobed = |i: &crate::config::Instance| crate::config::Instance {
            probe: None,
            ..i.clone()
        };
        if unprobed(was) != unprobed(inst) {
            ch.changed.push(inst.id.clone());
        }
    }
    for inst in &old.instances {
        if find(new, &inst.id).is_none() {
            ch.removed.push(inst.id.clone());
        }
    }
    let (o, n) = (&old.sync, &new.sync);
    ch.client = old.cloud != new.cloud || old.auth != new.auth || o.timeout != n.timeout;
    ch.timing = o.interval != n.interval
        || o.jitter != n.jitter
        || o.max_backoff != n.max_backoff
        || o.concurrency != n.concurrency;
    ch.server = old.server != new.server;
    ch.other = o.expiry_warning != n.expiry_warning || o.state_dir != n.state_dir;
    ch.probe |= o.probe_interval != n.probe_interval;
    ch
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Duration;

    const BASE: &str = r#"
[cloud]
region = "cn-north-4"
project_id = "p1"
[auth]
method = "token"
token = "t"
[sync]
interval = "1h"
[[instances]]
id = "a"
international = "/o/a.crt"
[[instances]]
id = "b"
international = "/o/b.crt"
[[instances]]
id = "c"
national = "/o/c.crt"
"#;

    fn cfg(text: &str) -> Config {
        crate::config::validate(crate::config::parse(text).unwrap(), Path::new("/")).unwrap()
    }

    #[test]
    fn identical_configs_differ_in_nothing() {
        let d = diff(&cfg(BASE), &cfg(BASE));
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(d.sync_now(false), SyncNow::Some(vec![]));
        assert_eq!(d.sync_now(true), SyncNow::All);
        assert_eq!(d.summary(), "nothing changed");
    }

    #[test]
    fn added_removed_and_changed_instances_are_told_apart() {
        let new = BASE
            .replace("id = \"a\"\ninternational = \"/o/a.crt\"\n", "")
            .replace("/o/c.crt", "/o/c2.crt")
            + "[[instances]]\nid = \"d\"\ninternational = \"/o/d.crt\"\n";
        let new = new.replacen("[[instances]]\n", "", 1);
        let d = diff(&cfg(BASE), &cfg(&new));
        assert_eq!(d.added, vec!["d"]);
        assert_eq!(d.removed, vec!["a"]);
        assert_eq!(d.changed, vec!["c"]);
        assert!(!d.client && !d.timing && !d.server && !d.other);
        // Only the changed one syncs now; "d" starts anyway as a new key.
        assert_eq!(d.sync_now(false), SyncNow::Some(vec!["c".into()]));
        assert_eq!(d.summary(), "added d; removed a; changed c");
    }

    #[test]
    fn a_hook_or_mode_change_counts_as_a_change() {
        let new = BASE.replace(
            "international = \"/o/b.crt\"\n",
            "international = \"/o/b.crt\"\nmode = \"0600\"\n",
        );
        assert_eq!(diff(&cfg(BASE), &cfg(&new)).changed, vec!["b"]);
    }

    #[test]
    fn cloud_or_auth_changes_rebuild_the_client_and_sync_all() {
        let d = diff(
            &cfg(BASE),
            &cfg(&BASE.replace("token = \"t\"", "token = \"t2\"")),
        );
        assert!(d.client);
        assert!(d.changed.is_empty());
        assert_eq!(d.sync_now(false), SyncNow::All);
        let d = diff(&cfg(BASE), &cfg(&BASE.replace("cn-north-4", "cn-east-3")));
        assert!(d.client);
        let d = diff(
            &cfg(BASE),
            &cfg(&BASE.replace("interval = \"1h\"", "interval = \"1h\"\ntimeout = \"9s\"")),
        );
        assert!(d.client && !d.timing);
    }

    #[test]
    fn a_service_or_service_endpoint_change_rebuilds_the_client() {
        let new = BASE.replace("id = \"b\"\n", "id = \"b\"\nservice = \"rds\"\n");
        let d = diff(&cfg(BASE), &cfg(&new));
        assert!(d.client, "{d:?}");
        assert_eq!(d.changed, vec!["b"]);
        assert_eq!(d.sync_now(false), SyncNow::All);
        let moved = new.replace(
            "project_id = \"p1\"\n",
            "project_id = \"p1\"\n[cloud.endpoints]\nrds = \"https://127.0.0.1:9\"\n",
        );
        let d = diff(&cfg(&new), &cfg(&moved));
        assert!(d.client && d.changed.is_empty(), "{d:?}");
    }

    #[test]
    fn probe_settings_change_what_is_probed_and_sync_nothing() {
        let probed = BASE.replace(
            "international = \"/o/b.crt\"\n",
            "international = \"/o/b.crt\"\nprobe = [\"10.0.0.1:8635\"]\n",
        );
        let d = diff(&cfg(BASE), &cfg(&probed));
        assert!(d.probe && !d.is_empty(), "{d:?}");
        assert!(d.changed.is_empty());
        assert_eq!(d.sync_now(false), SyncNow::Some(vec![]));
        assert_eq!(d.summary(), "new probe settings");

        let other_port = probed.replace(":8635", ":8636");
        assert!(diff(&cfg(&probed), &cfg(&other_port)).probe);
        let slower = probed.replace(
            "interval = \"1h\"",
            "interval = \"1h\"\nprobe_interval = \"1m\"",
        );
        let d = diff(&cfg(&probed), &cfg(&slower));
        assert!(d.probe && d.changed.is_empty() && !d.timing, "{d:?}");
        // A probe change alongside a real one: that instance still syncs.
        let both = other_port.replace("/o/b.crt", "/o/b2.crt");
        let d = diff(&cfg(&probed), &cfg(&both));
        assert!(d.probe);
        assert_eq!(d.changed, vec!["b"]);
    }

    #[test]
    fn timing_server_and_other_settings_are_flagged() {
        let d = diff(
            &cfg(BASE),
            &cfg(&BASE.replace("interval = \"1h\"", "interval = \"2h\"\nconcurrency = 2")),
        );
        assert!(d.timing && !d.client);
        assert_eq!(d.sync_now(false), SyncNow::Some(vec![]));

        let with_server = format!("{BASE}[server]\nlisten = \"127.0.0.1:9464\"\n");
        let d = diff(&cfg(BASE), &cfg(&with_server));
        assert!(d.server && !d.timing && d.added.is_empty());

        let d = diff(
            &cfg(BASE),
            &cfg(&BASE.replace(
                "interval = \"1h\"",
                "interval = \"1h\"\nexpiry_warning = \"7d\"",
            )),
        );
        assert!(d.other && !d.is_empty());
        assert_eq!(cfg(BASE).sync.interval, Duration::from_secs(3600));
    }

    #[test]
    fn each_timing_setting_alone_is_a_timing_change_and_state_dir_alone_is_other() {
        for setting in [
            "interval = \"2h\"",
            "interval = \"1h\"\njitter = \"6m\"",
            "interval = \"1h\"\nmax_backoff = \"7m\"",
            "interval = \"1h\"\nconcurrency = 7",
        ] {
            let d = diff(
                &cfg(BASE),
                &cfg(&BASE.replace("interval = \"1h\"", setting)),
            );
            assert!(d.timing, "{setting}: {d:?}");
            assert!(!d.client && !d.server && !d.other, "{setting}: {d:?}");
        }
        let d = diff(
            &cfg(BASE),
            &cfg(&BASE.replace(
                "interval = \"1h\"",
                "interval = \"1h\"\nstate_dir = \"/var/x\"",
            )),
        );
        assert!(d.other && !d.timing && !d.client, "{d:?}");
    }
}
