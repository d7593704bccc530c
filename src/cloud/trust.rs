//! The roots an HTTPS connection trusts: the system's, plus `cloud.ca_file`.
//!
//! "The system's" are what `rustls-native-certs` finds, as the TLS stack
//! did before this module: the files named by `SSL_CERT_FILE` and
//! `SSL_CERT_DIR` when either is set; otherwise the distribution's bundle
//! file (`/etc/ssl/certs/ca-certificates.crt` and the like) and its
//! certificate directories (`/etc/ssl/certs`, ...). The bundle is one file
//! of a few hundred certificates (parsing it was a millisecond or two of
//! every start); the directories are a file per certificate (on Debian, the
//! same certificates as the bundle, through two symlinks each), and reading
//! them was most of a short run's start-up. So [`Trust`] reads in steps,
//! each only when the one before refuses a server's chain:
//!
//! 1. at build time, with the clients (a blocking context: the start, or the
//!    blocking pool during a reload, where a stalled read is bounded), the
//!    roots of `cloud.ca_file`; without a root there, the system's bundle
//!    file too (step 2 at once);
//! 2. `ca_file` and the system's bundle file, once per build of the clients;
//! 3. everything `rustls-native-certs` loads (the bundle and every
//!    directory), plus `ca_file`, once per build.
//!
//! Each set is a subset of the next, and a chain valid against some roots is
//! valid against more, so the answer is always the last set's: exactly "the
//! system's roots plus `ca_file`", never fewer, and a refusal is the full
//! set's refusal. Steps 2 and 3 run inside the TLS handshake, on the runtime
//! thread: for the milliseconds of reading the files, once per build, and
//! only when some server is not vouched for by what was read before (an
//! endpoint `ca_file` does not cover, a misconfigured endpoint, a root added
//! to a directory but not to the bundle). They read only regular files
//! (the bundle through [`readfile`], at most [`BUNDLE_LIMIT`] bytes), so they
//! cannot block on a FIFO. Building the clients again (a reload) reads the
//! system's files again, as before.
//!
//! With no root in `ca_file` or the bundle and no directory to read,
//! building fails at once, as it did: nothing could ever be trusted.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::BuildError;
use crate::readfile::{self, Links};

/// The most of the system's bundle file read (Debian's is about 220 KiB).
pub const BUNDLE_LIMIT: u64 = 16 * 1024 * 1024;

/// Where the system's roots are, as `rustls-native-certs` looks for them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sources {
    file: Option<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Sources {
    /// `SSL_CERT_FILE` / `SSL_CERT_DIR` when either is set (then only they
    /// count), else what `openssl-probe` finds on this system.
    fn find() -> Sources {
        let file = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
        let dirs: Vec<PathBuf> = std::env::var_os("SSL_CERT_DIR")
            .map(|d| {
                std::env::split_paths(&d)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if file.is_some() || !dirs.is_empty() {
            return Sources { file, dirs };
        }
        let probed = openssl_probe::probe();
        Sources {
            file: probed.cert_file,
            dirs: probed.cert_dir,
        }
    }
}

/// The roots one build of the clients trusts: a rustls verifier that reads
/// the system's bundle file and certificate directories only when a
/// server's chain needs them.
#[derive(Debug)]
pub struct Trust {
    provider: Arc<CryptoProvider>,
    /// The roots of `cloud.ca_file` (empty without it).
    extra: Vec<CertificateDer<'static>>,
    sources: Sources,
    /// Step 1: `ca_file`, and the bundle file too when `ca_file` holds no
    /// root; `None` when neither does.
    first: Option<Arc<WebPkiServerVerifier>>,
    /// Whether `first` holds the bundle (step 2 is then step 1).
    first_has_bundle: bool,
    /// Step 2: `ca_file` and the bundle file; loaded on first use.
    bundle: OnceLock<Option<Arc<WebPkiServerVerifier>>>,
    /// Step 3: plus every directory; loaded on first use.
    full: OnceLock<Result<Arc<WebPkiServerVerifier>, rustls::Error>>,
}

impl Trust {
    /// The trust of one build: the roots of `cloud.ca_file` (`extra`) and
    /// the system's. Blocking: it reads the system's bundle file.
    pub fn new(extra: Vec<CertificateDer<'static>>) -> Result<Arc<Trust>, BuildError> {
        Trust::with_sources(extra, Sources::find())
    }

    fn with_sources(
        extra: Vec<CertificateDer<'static>>,
        sources: Sources,
    ) -> Result<Arc<Trust>, BuildError> {
        let provider = super::crypto_provider();
        let own = roots(&extra, Vec::new());
        // Unreadable or broken system certificates are skipped, as the
        // platform verifier did; only having no root at all is an error.
        let (store, first_has_bundle) = if own.is_empty() {
            (roots(&extra, read_bundle(&sources)), true)
        } else {
            (own, false)
        };
        if store.is_empty() && sources.dirs.is_empty() {
            return Err(BuildError::Tls(NO_ROOTS.into()));
        }
        let first = if store.is_empty() {
            None
        } else {
            Some(verifier(&provider, store).map_err(|e| BuildError::Tls(e.to_string()))?)
        };
        Ok(Arc::new(Trust {
            provider,
            extra,
            sources,
            first,
            first_has_bundle,
            bundle: OnceLock::new(),
            full: OnceLock::new(),
        }))
    }

    /// A TLS client configuration that verifies servers with this trust, for
    /// `reqwest::ClientBuilder::tls_backend_preconfigured`: TLS 1.2 and 1.3,
    /// HTTP/1.1 by ALPN, as the client's own configuration had.
    pub fn tls_config(self: &Arc<Self>) -> Result<rustls::ClientConfig, BuildError> {
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .map_err(|e| BuildError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::clone(self) as Arc<dyn ServerCertVerifier>)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// Step 2, loaded on first use: `ca_file` and the bundle file; `None`
    /// when step 1 already held them, or they hold no root.
    fn with_bundle(&self) -> Option<&Arc<WebPkiServerVerifier>> {
        if self.first_has_bundle || self.sources.file.is_none() {
            return None;
        }
        self.bundle
            .get_or_init(|| {
                let store = roots(&self.extra, read_bundle(&self.sources));
                verifier(&self.provider, store).ok()
            })
            .as_ref()
    }

    /// Step 3, loaded on first use: the bundle file and every directory, as
    /// `rustls-native-certs` reads them (regular files only), plus `ca_file`.
    fn full(&self) -> &Result<Arc<WebPkiServerVerifier>, rustls::Error> {
        self.full.get_or_init(|| {
            let mut certs = read_bundle(&self.sources);
            for dir in &self.sources.dirs {
                certs.extend(rustls_native_certs::load_certs_from_paths(None, Some(dir)).certs);
            }
            // A bundle file inside a directory is read twice.
            certs.sort_unstable_by(|a, b| a.as_ref().cmp(b.as_ref()));
            certs.dedup();
            let store = roots(&self.extra, certs);
            if store.is_empty() {
                return Err(rustls::Error::General(NO_ROOTS.into()));
            }
            verifier(&self.provider, store)
        })
    }
}

/// The certificates of the system's bundle file: none when there is none,
/// it is not a regular file (never blocking on a FIFO), cannot be read or
/// is larger than [`BUNDLE_LIMIT`]; blocks that do not parse are skipped.
fn read_bundle(sources: &Sources) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    let Some(file) = &sources.file else {
        return Vec::new();
    };
    match readfile::read_regular(file, BUNDLE_LIMIT, Links::Follow) {
        Ok(Some(bytes)) => CertificateDer::pem_slice_iter(&bytes)
            .filter_map(Result::ok)
            .collect(),
        _ => Vec::new(),
    }
}

const NO_ROOTS: &str = "No CA certificates were loaded from the system";

/// A root store of `extra` and `system`; certificates that are not usable
/// as roots are skipped.
fn roots(extra: &[CertificateDer<'static>], system: Vec<CertificateDer<'static>>) -> RootCertStore {
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(extra.iter().cloned());
    store.add_parsable_certificates(system);
    store
}

fn verifier(
    provider: &Arc<CryptoProvider>,
    store: RootCertStore,
) -> Result<Arc<WebPkiServerVerifier>, rustls::Error> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(store), Arc::clone(provider))
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))
}

impl ServerCertVerifier for Trust {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verify = |v: &WebPkiServerVerifier| {
            v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        };
        // Each step's verifier in turn, the next only after a refusal; the
        // last one asked gives the answer.
        // `once_with`: the bundle is read only if the first step refused.
        let steps = std::iter::once(self.first.as_ref())
            .chain(std::iter::once_with(|| self.with_bundle()))
            .flatten();
        let mut refused = None;
        for v in steps {
            match verify(v) {
                Ok(ok) => return Ok(ok),
                Err(e) => refused = Some(e),
            }
        }
        match refused {
            Some(e) if self.sources.dirs.is_empty() => Err(e),
            _ => match self.full() {
                Ok(v) => verify(v),
                Err(e) => Err(e.clone()),
            },
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    /// A CA (its PEM) and a certificate for `localhost` it signed.
    fn ca_and_leaf(cn: &str) -> (String, CertificateDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, cn);
        let ca = params.self_signed(&key).unwrap();
        let issuer = Issuer::new(params, key);
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&KeyPair::generate().unwrap(), &issuer)
            .unwrap();
        (ca.pem(), leaf.der().clone())
    }

    fn der(pem: &str) -> CertificateDer<'static> {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    fn verify(trust: &Trust, leaf: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let name = ServerName::try_from("localhost").unwrap();
        trust
            .verify_server_cert(leaf, &[], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    fn dirs_read(trust: &Trust) -> bool {
        trust.full.get().is_some()
    }

    fn bundle_read_late(trust: &Trust) -> bool {
        trust.bundle.get().is_some()
    }

    /// A bundle file and a directory of one CA each, in a temporary folder.
    fn system(bundle_ca: &str, dir_ca: &str) -> (tempfile::TempDir, Sources) {
        let d = tempfile::tempdir().unwrap();
        let bundle = d.path().join("bundle.pem");
        std::fs::write(&bundle, bundle_ca).unwrap();
        let dir = d.path().join("certs");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("one.pem"), dir_ca).unwrap();
        let sources = Sources {
            file: Some(bundle),
            dirs: vec![dir],
        };
        (d, sources)
    }

    #[test]
    fn the_directories_are_read_only_when_a_chain_needs_them_and_the_answer_is_the_union() {
        let (file_ca, file_leaf) = ca_and_leaf("ca_file");
        let (bundle_ca, bundle_leaf) = ca_and_leaf("bundle");
        let (dir_ca, dir_leaf) = ca_and_leaf("directory");
        let (_, stranger) = ca_and_leaf("stranger");
        let (_d, sources) = system(&bundle_ca, &dir_ca);
        let trust = Trust::with_sources(vec![der(&file_ca)], sources).unwrap();

        verify(&trust, &file_leaf).unwrap();
        assert!(!bundle_read_late(&trust), "ca_file sufficed");
        verify(&trust, &bundle_leaf).unwrap();
        assert!(bundle_read_late(&trust));
        assert!(!dirs_read(&trust), "ca_file and the bundle sufficed");
        verify(&trust, &dir_leaf).unwrap();
        assert!(dirs_read(&trust));
        // Every root stays trusted once the directories are read.
        verify(&trust, &file_leaf).unwrap();
        verify(&trust, &bundle_leaf).unwrap();
        assert_eq!(
            verify(&trust, &stranger),
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        );
    }

    #[test]
    fn without_ca_file_the_bundle_is_read_at_build_and_with_one_only_when_a_chain_needs_it() {
        let (file_ca, file_leaf) = ca_and_leaf("ca_file");
        let (bundle_ca, bundle_leaf) = ca_and_leaf("bundle");
        let (dir_ca, _) = ca_and_leaf("directory");
        let (d, sources) = system(&bundle_ca, &dir_ca);
        // Without ca_file: the bundle is step 1, read at build. Emptying it
        // afterwards changes nothing for this build.
        let trust = Trust::with_sources(Vec::new(), sources.clone()).unwrap();
        std::fs::write(d.path().join("bundle.pem"), "").unwrap();
        verify(&trust, &bundle_leaf).unwrap();
        assert!(!bundle_read_late(&trust) && !dirs_read(&trust));
        // With ca_file: the bundle is read when a server needs more, once.
        let trust = Trust::with_sources(vec![der(&file_ca)], sources).unwrap();
        verify(&trust, &file_leaf).unwrap();
        std::fs::write(d.path().join("bundle.pem"), &bundle_ca).unwrap();
        verify(&trust, &bundle_leaf).unwrap();
        assert!(bundle_read_late(&trust) && !dirs_read(&trust));
    }

    #[test]
    fn a_bundle_that_is_a_fifo_is_no_roots_and_never_blocks() {
        let (file_ca, file_leaf) = ca_and_leaf("ca_file");
        let (_, stranger) = ca_and_leaf("stranger");
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("bundle.pem");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let sources = Sources {
            file: Some(fifo),
            dirs: Vec::new(),
        };
        // Read at build (no ca_file): no root anywhere.
        let e = Trust::with_sources(Vec::new(), sources.clone()).unwrap_err();
        assert!(e.to_string().contains("No CA certificates"), "{e}");
        // Read in the handshake (after ca_file refused): a refusal, at once.
        let trust = Trust::with_sources(vec![der(&file_ca)], sources).unwrap();
        verify(&trust, &file_leaf).unwrap();
        assert!(verify(&trust, &stranger).is_err());
        assert!(bundle_read_late(&trust));
    }

    #[test]
    fn a_refusal_reads_the_directories_once_and_is_the_full_sets_refusal() {
        let (bundle_ca, _) = ca_and_leaf("bundle");
        let (dir_ca, _) = ca_and_leaf("directory");
        let (_, stranger) = ca_and_leaf("stranger");
        let (d, sources) = system(&bundle_ca, &dir_ca);
        let trust = Trust::with_sources(Vec::new(), sources).unwrap();
        assert!(verify(&trust, &stranger).is_err());
        assert!(dirs_read(&trust));
        // Read once per build: a root added later is not seen by this one.
        let (late_ca, late_leaf) = ca_and_leaf("late");
        std::fs::write(d.path().join("certs/late.pem"), late_ca).unwrap();
        assert!(verify(&trust, &late_leaf).is_err());
    }

    #[test]
    fn without_directories_the_bundle_and_ca_file_are_all_there_is() {
        let (bundle_ca, bundle_leaf) = ca_and_leaf("bundle");
        let (_, stranger) = ca_and_leaf("stranger");
        let d = tempfile::tempdir().unwrap();
        let bundle = d.path().join("bundle.pem");
        std::fs::write(&bundle, &bundle_ca).unwrap();
        let sources = Sources {
            file: Some(bundle),
            dirs: Vec::new(),
        };
        let trust = Trust::with_sources(Vec::new(), sources).unwrap();
        verify(&trust, &bundle_leaf).unwrap();
        assert!(verify(&trust, &stranger).is_err());
        assert!(!dirs_read(&trust));
    }

    #[test]
    fn no_roots_anywhere_is_a_build_error_and_empty_directories_a_refusal() {
        let d = tempfile::tempdir().unwrap();
        let empty = d.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        for file in [None, Some(empty.clone())] {
            let sources = Sources {
                file,
                dirs: Vec::new(),
            };
            let e = Trust::with_sources(Vec::new(), sources).unwrap_err();
            assert!(e.to_string().contains("No CA certificates"), "{e}");
        }
        // Directories to read, but nothing in them: every server is refused.
        let sources = Sources {
            file: Some(empty),
            dirs: vec![d.path().to_path_buf()],
        };
        let trust = Trust::with_sources(Vec::new(), sources).unwrap();
        let (_, leaf) = ca_and_leaf("any");
        let e = verify(&trust, &leaf).unwrap_err();
        assert!(e.to_string().contains("No CA certificates"), "{e}");
    }
}
