//! Small helpers shared by the integration tests: a stand-in plus a scratch
//! directory, config writing, and running the binary.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use dds_standin::{Fault, FaultRule, Listener, StandIn};

pub const BIN: &str = env!("CARGO_BIN_EXE_dds-certsync");
pub const PROJECT: &str = "0a1b2c3d4e5f";

/// A stand-in, a scratch directory and a config file in it.
pub struct Env {
    pub standin: StandIn,
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    /// Extra `[sync]` lines.
    pub sync: String,
    /// Extra `[cloud]` lines.
    pub cloud: String,
    /// The `[auth]` section body.
    pub auth: String,
    pub instances: Vec<String>,
}

impl Env {
    pub fn new() -> Env {
        let standin = StandIn::start();
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("standin-ca.pem");
        standin.write_ca(&ca).expect("write CA");
        let auth = format!("method = \"token\"\ntoken = \"{}\"\n", standin.token());
        Env {
            standin,
            dir,
            ca,
            sync: String::new(),
            cloud: String::new(),
            auth,
            instances: Vec::new(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Registers an instance with the stand-in and the config, writing both
    /// categories to `out/{id}-{category}.crt`, with a hook recording its
    /// environment into `hook/{id}.{n}.env`.
    pub fn instance(&mut self, id: &str) -> &mut Env {
        self.standin.add_instance(PROJECT, id);
        self.instances.push(format!(
            r#"
[[instances]]
id = "{id}"
name = "name-{id}"
international = "out/{id}-international.crt"
national = "out/{id}-national.crt"
on_change = ["/bin/sh", "{hook}"]
hook_timeout = "10s"
"#,
            hook = self.record_hook().display()
        ));
        self
    }

    /// A hook script that records the variables it was given, one file per run.
    pub fn record_hook(&self) -> PathBuf {
        let dir = self.path("hook");
        fs::create_dir_all(&dir).unwrap();
        let script = self.path("record-hook.sh");
        fs::write(
            &script,
            format!(
                r#"dir="{dir}"
n=$(ls "$dir" | grep -c "^$DDS_CERTSYNC_INSTANCE_ID\.")
printf 'DDS_CERTSYNC_INSTANCE_ID=%s\nDDS_CERTSYNC_INSTANCE_NAME=%s\nDDS_CERTSYNC_CHANGED=%s\nDDS_CERTSYNC_OLD_SHA256=%s\nDDS_CERTSYNC_NEW_SHA256=%s\nNOTIFY_SOCKET=%s\n' \
  "$DDS_CERTSYNC_INSTANCE_ID" "$DDS_CERTSYNC_INSTANCE_NAME" "$DDS_CERTSYNC_CHANGED" \
  "$DDS_CERTSYNC_OLD_SHA256" "$DDS_CERTSYNC_NEW_SHA256" "${{NOTIFY_SOCKET:-}}" > "$dir/$DDS_CERTSYNC_INSTANCE_ID.$n.env.tmp"
mv "$dir/$DDS_CERTSYNC_INSTANCE_ID.$n.env.tmp" "$dir/$DDS_CERTSYNC_INSTANCE_ID.$n.env"
"#,
                dir = dir.display()
            ),
        )
        .unwrap();
        script
    }

    /// Adds a raw `[[instances]]` block.
    pub fn raw_instance(&mut self, block: &str) -> &mut Env {
        self.instances.push(format!("\n[[instances]]\n{block}\n"));
        self
    }

    pub fn config_text(&self) -> String {
        format!(
            "[cloud]\nendpoint = \"{api}\"\nproject_id = \"{PROJECT}\"\nca_file = \"{ca}\"\n{cloud}\n[auth]\n{auth}\n[sync]\n{timeout}{state}{sync}\n{inst}",
            api = self.standin.api_url(),
            ca = self.ca.display(),
            cloud = self.cloud,
            auth = self.auth,
            sync = self.sync,
            timeout = if self.sync.contains("timeout") {
                ""
            } else {
                "timeout = \"5s\"\n"
            },
            inst = self.instances.concat(),
            state = if self.sync.contains("state_dir") {
                String::new()
            } else {
                format!("state_dir = \"{}\"\n", self.path("state").display())
            },
        )
    }

    pub fn write_config(&self) -> PathBuf {
        let p = self.path("config.toml");
        fs::write(&p, self.config_text()).unwrap();
        p
    }

    pub fn out(&self, id: &str, category: &str) -> PathBuf {
        self.path(&format!("out/{id}-{category}.crt"))
    }

    /// The hook runs recorded for an instance, oldest first.
    pub fn hook_runs(&self, id: &str) -> Vec<String> {
        let mut runs: Vec<(usize, String)> = fs::read_dir(self.path("hook"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let n = name
                            .strip_prefix(&format!("{id}."))?
                            .strip_suffix(".env")?
                            .parse()
                            .ok()?;
                        Some((n, fs::read_to_string(e.path()).ok()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        runs.sort();
        runs.into_iter().map(|(_, s)| s).collect()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config")
            .arg(self.path("config.toml"))
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("DDS_CERTSYNC_CONFIG")
            .env_remove("DDS_CERTSYNC_LOG_FORMAT")
            .current_dir(self.dir.path());
        c
    }

    /// Writes the config and runs `--once`.
    pub fn once(&self, extra: &[&str]) -> Run {
        self.write_config();
        let mut args = vec!["--once"];
        args.extend_from_slice(extra);
        Run::from(self.command(&args).output().expect("run binary"))
    }

    /// Writes the config and starts the daemon.
    pub fn daemon(&self, extra: &[&str]) -> Daemon {
        self.write_config();
        let log = self.path("daemon.log");
        let child = self
            .command(extra)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("start daemon");
        Daemon { child, log }
    }

    /// The expected file content for what the stand-in serves now.
    pub fn served(&self, id: &str, category: &str) -> Vec<u8> {
        canonical(self.standin.cert_pem(id, category).as_bytes())
    }
}

/// What a run printed and how it ended.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn all(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout, self.stderr)
    }

    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "unexpected exit status\n{}", self.all());
        self
    }
}

/// A daemon process, killed on drop.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Waits for the process to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits until the log contains `needle` `count` times.
    pub fn wait_log(&self, needle: &str, count: usize, limit: Duration) {
        let ok = wait_until(limit, || self.log().matches(needle).count() >= count);
        assert!(ok, "log never showed {needle:?} x{count}\n{}", self.log());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` every 20 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The canonical form dds-certsync writes for a PEM body.
pub fn canonical(pem: &[u8]) -> Vec<u8> {
    dds_certsync::certcheck::verify(pem, std::time::SystemTime::now())
        .expect("stand-in serves a valid certificate")
        .pem
}

/// (inode, mtime in ns) of a file.
pub fn stamp(p: &Path) -> (u64, i64) {
    let m = fs::metadata(p).unwrap();
    (m.ino(), m.mtime() * 1_000_000_000 + m.mtime_nsec())
}

/// The names in a directory, sorted.
pub fn ls(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Replaces the config file the way an editor or `mv` does (write a temp,
/// rename over), so a reader never sees half a file.
pub fn replace_config(env: &Env) {
    let p = env.path("config.toml");
    let tmp = env.path(".config.toml.new");
    fs::write(&tmp, env.config_text()).unwrap();
    fs::rename(&tmp, &p).unwrap();
}

/// The DDS API requests the stand-in saw for an instance.
pub fn api_requests(env: &Env, id: &str) -> Vec<dds_standin::Recorded> {
    env.standin
        .requests()
        .into_iter()
        .filter(|r| r.listener == Listener::Api && r.path.contains(&format!("/instances/{id}/")))
        .collect()
}
