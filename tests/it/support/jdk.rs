//! A real JDK for the truststore tests: `keytool -list` on a store, and a
//! one-file Java TLS client (`tests/data/TlsProbe.java`, compiled once per
//! test run with `javac`) handshaking with the stand-in's instance listeners.
//!
//! The JDK is the one on `PATH`, or the one under `DDS_CERTSYNC_TEST_JAVA_HOME`
//! (to measure another JDK with the same tests). Without one the tests
//! [`super::skip`]: a failure in CI, where `.ci/run` installs
//! `openjdk-17-jdk-headless`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The variable naming another JDK to test with.
pub const JAVA_HOME_VAR: &str = "DDS_CERTSYNC_TEST_JAVA_HOME";

/// A JDK's tools.
#[derive(Debug, Clone)]
pub struct Jdk {
    bin: Option<PathBuf>,
}

/// One entry as `keytool -list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeytoolEntry {
    pub alias: String,
    /// `trustedCertEntry`, `PrivateKeyEntry`, ...
    pub kind: String,
    /// The certificate's SHA-256, lower-case hex without colons.
    pub sha256: String,
}

impl Jdk {
    /// The JDK to test with, or a [`super::skip`] of `test` (`None`).
    pub fn find(test: &str) -> Option<Jdk> {
        let jdk = Jdk {
            bin: std::env::var_os(JAVA_HOME_VAR).map(|h| Path::new(&h).join("bin")),
        };
        let ok = ["javac", "java", "keytool"].iter().all(|t| {
            jdk.tool(t)
                .arg(if *t == "keytool" { "-help" } else { "-version" })
                .output()
                .is_ok()
        });
        if ok {
            Some(jdk)
        } else {
            super::skip(
                test,
                "no JDK (javac, java, keytool) on PATH: apt-get install openjdk-17-jdk-headless; .ci/run installs it",
            );
            None
        }
    }

    fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(match &self.bin {
            Some(b) => b.join(name),
            None => PathBuf::from(name),
        });
        // The JVM's own tuning variables would change what is measured.
        c.env_remove("JAVA_TOOL_OPTIONS")
            .env_remove("JDK_JAVA_OPTIONS");
        c
    }

    /// `java -version`'s first line.
    pub fn version(&self) -> String {
        let out = self.tool("java").arg("-version").output().unwrap();
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// `keytool -list -storetype PKCS12`: the entries, or keytool's error.
    pub fn keytool_list(&self, store: &Path, password: &str) -> Result<Vec<KeytoolEntry>, String> {
        let out = self
            .tool("keytool")
            .args(["-list", "-storetype", "PKCS12", "-keystore"])
            .arg(store)
            .args(["-storepass", password])
            .env("LC_ALL", "C.UTF-8")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(text);
        }
        // "alias, Dec 2, 2026, trustedCertEntry, " then
        // "Certificate fingerprint (SHA-256): AB:CD:...".
        let mut entries = Vec::new();
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            let Some(fp) = lines
                .peek()
                .and_then(|n| n.strip_prefix("Certificate fingerprint (SHA-256): "))
            else {
                continue;
            };
            let fields: Vec<&str> = line.split(", ").collect();
            let kind = fields.iter().rev().find(|f| f.ends_with("Entry")).copied();
            entries.push(KeytoolEntry {
                alias: fields[0].to_string(),
                kind: kind.unwrap_or("?").trim_end_matches(',').to_string(),
                sha256: fp.replace(':', "").to_lowercase(),
            });
        }
        let count = format!("Your keystore contains {} entr", entries.len());
        assert!(
            text.contains(&count),
            "keytool listed other than it counted:\n{text}"
        );
        entries.sort();
        Ok(entries)
    }

    /// Runs the Java TLS client once (one JVM) against each port, trusting
    /// `store` through `-Djavax.net.ssl.trustStore`: per port, `Ok` with the
    /// protocol or `Err` with the exception.
    pub fn handshakes(
        &self,
        store: &Path,
        password: &str,
        ports: &[u16],
    ) -> Vec<Result<String, String>> {
        let classes = self.probe_classes();
        let out = self
            .tool("java")
            .arg("-cp")
            .arg(classes)
            .arg(format!("-Djavax.net.ssl.trustStore={}", store.display()))
            .arg(format!("-Djavax.net.ssl.trustStorePassword={password}"))
            .arg("-Djavax.net.ssl.trustStoreType=PKCS12")
            .arg("TlsProbe")
            .args(ports.iter().map(u16::to_string))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        ports
            .iter()
            .map(|p| {
                let line = stdout
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{p} ")))
                    .unwrap_or_else(|| {
                        panic!(
                            "TlsProbe said nothing of port {p}:\n{stdout}{}",
                            String::from_utf8_lossy(&out.stderr)
                        )
                    });
                match line.split_once(' ') {
                    Some(("ok", proto)) => Ok(proto.to_string()),
                    _ => Err(line.to_string()),
                }
            })
            .collect()
    }

    /// The compiled client: `javac` once per test run and JDK.
    fn probe_classes(&self) -> PathBuf {
        static COMPILED: OnceLock<PathBuf> = OnceLock::new();
        COMPILED
            .get_or_init(|| {
                let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/TlsProbe.java");
                let dir = tempfile::Builder::new()
                    .prefix("tls-probe-")
                    .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
                    .unwrap()
                    .keep();
                let out = self
                    .tool("javac")
                    .arg("-d")
                    .arg(&dir)
                    .arg(&src)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "javac failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                dir
            })
            .clone()
    }
}

/// The SHA-256 of a DER certificate as `keytool` shows it (lower case, no colons).
pub fn fingerprint(der: &[u8]) -> String {
    dds_certsync::certcheck::hex(&dds_certsync::certcheck::sha256(der))
}
