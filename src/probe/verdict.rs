//! Pure: does the chain a server presented verify against the bytes of a CA
//! file, at a given time?
//!
//! The file's certificates are the trust anchors, as they are for a client
//! that reads the file (`tlsCAFile`). The check is webpki's, through rustls
//! (`verify_server_cert_signed_by_trust_anchor`): signatures up to an
//! anchor, validity dates of every certificate, and the server-auth usage.
//! The **hostname is not checked**: DDS server certificates do not name the
//! addresses clients use, and Huawei's connection examples turn hostname
//! checks off.

use std::time::Duration;

use rustls::RootCertStore;
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::server::ParsedCertificate;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::certcheck;

/// What one probe of one address found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server's chain verifies against the file.
    Verified,
    /// It does not: the file on disk would fail a client now.
    Refused(Refusal),
    /// No TLS handshake: nothing listens, the connection or handshake
    /// failed or timed out. Says nothing about the file.
    Unreachable(String),
}

/// Why a chain does not verify against the file, with what a person needs
/// to see the mismatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why, in words (webpki's error, or what is wrong with the file).
    pub reason: String,
    /// The issuer of the server's certificate, if it could be read.
    pub issuer: String,
    /// The subjects of the certificates in the file, in file order.
    pub subjects: Vec<String>,
}

impl Outcome {
    /// Whether the chain verified: the value of `dds_certsync_probe_ok`.
    pub fn ok(&self) -> bool {
        matches!(self, Outcome::Verified)
    }
}

/// What was read at the CA file's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRead {
    Bytes(Vec<u8>),
    Missing,
    Error(String),
}

/// Judges a presented chain (leaf first, then what else the server sent)
/// against the content of the CA file, at `now`.
pub fn judge(chain: &[CertificateDer<'_>], file: &FileRead, now: UnixTime) -> Outcome {
    let issuer = chain.first().map_or_else(
        || "(no certificate)".to_string(),
        |leaf| issuer_of(leaf.as_ref()),
    );
    let refuse = |reason: String, subjects: Vec<String>| {
        Outcome::Refused(Refusal {
            reason,
            issuer: issuer.clone(),
            subjects,
        })
    };
    let bytes = match file {
        FileRead::Bytes(b) => b,
        FileRead::Missing => return refuse("the CA file does not exist".into(), Vec::new()),
        FileRead::Error(e) => return refuse(format!("cannot read the CA file: {e}"), Vec::new()),
    };
    let subjects = certcheck::inspect_pem(bytes)
        .map(|certs| certs.into_iter().map(|c| c.subject).collect())
        .unwrap_or_default();
    let mut roots = RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(bytes).flatten() {
        // A certificate webpki cannot take as an anchor (an SM2 one, say)
        // anchors nothing, exactly as for a client reading the file.
        let _ = roots.add(der);
    }
    if roots.is_empty() {
        return refuse(
            "the CA file holds no certificate usable as a trust anchor".into(),
            subjects,
        );
    }
    let Some(leaf) = chain.first() else {
        return refuse("the server sent no certificate".into(), subjects);
    };
    let parsed = match ParsedCertificate::try_from(leaf) {
        Ok(p) => p,
        Err(e) => {
            return refuse(
                format!("the server's certificate is unreadable: {e}"),
                subjects,
            );
        }
    };
    let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
    match verify_server_cert_signed_by_trust_anchor(
        &parsed,
        &roots,
        &chain[1..],
        now,
        algorithms.all,
    ) {
        Ok(()) => Outcome::Verified,
        Err(e) => refuse(format!("the server's chain does not verify: {e}"), subjects),
    }
}

/// The issuer of a DER certificate, as text.
fn issuer_of(der: &[u8]) -> String {
    x509_parser::parse_x509_certificate(der).map_or_else(
        |_| "(unreadable certificate)".to_string(),
        |(_, cert)| cert.issuer().to_string(),
    )
}

/// `now` as rustls wants it.
pub fn unix_time(now: std::time::SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(
        now.duration_since(std::time::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM")
    }

    fn now() -> UnixTime {
        unix_time(SystemTime::now())
    }

    fn refusal(o: Outcome) -> Refusal {
        match o {
            Outcome::Refused(r) => r,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_chain_verifies_against_its_issuer_alone_or_among_others() {
        let (ca, leaf) = dds_standin::ca_and_server_pem("Probe CA new", false);
        let (old, _) = dds_standin::ca_and_server_pem("Probe CA old", false);
        let chain = [der(&leaf)];
        for file in [ca.clone(), format!("{ca}{old}"), format!("{old}{ca}")] {
            let outcome = judge(&chain, &FileRead::Bytes(file.into_bytes()), now());
            assert_eq!(outcome, Outcome::Verified);
            assert!(outcome.ok());
        }
    }

    #[test]
    fn another_ca_is_refused_naming_the_issuer_and_the_files_subjects() {
        let (_, leaf) = dds_standin::ca_and_server_pem("Probe CA new", false);
        let (old, _) = dds_standin::ca_and_server_pem("Probe CA old", false);
        let (older, _) = dds_standin::ca_and_server_pem("Probe CA older", false);
        let file = format!("{old}{older}").into_bytes();
        let r = refusal(judge(&[der(&leaf)], &FileRead::Bytes(file), now()));
        assert!(r.issuer.contains("CN=Probe CA new"), "{r:?}");
        assert_eq!(r.subjects.len(), 2);
        assert!(r.subjects[0].contains("CN=Probe CA old"), "{r:?}");
        assert!(r.subjects[1].contains("CN=Probe CA older"), "{r:?}");
        assert!(r.reason.contains("does not verify"), "{r:?}");
        assert!(!Outcome::Refused(r).ok());
    }

    #[test]
    fn validity_counts_an_expired_server_certificate_is_refused() {
        let (ca, leaf) = dds_standin::ca_and_server_pem("Probe CA", true);
        let r = refusal(judge(
            &[der(&leaf)],
            &FileRead::Bytes(ca.into_bytes()),
            now(),
        ));
        assert!(r.reason.to_lowercase().contains("expired"), "{r:?}");
    }

    #[test]
    fn the_time_is_the_one_given() {
        let (ca, leaf) = dds_standin::ca_and_server_pem("Probe CA", false);
        let file = FileRead::Bytes(ca.into_bytes());
        let in_two_years = unix_time(SystemTime::now() + Duration::from_secs(2 * 366 * 86400));
        assert!(!judge(&[der(&leaf)], &file, in_two_years).ok());
        assert!(judge(&[der(&leaf)], &file, now()).ok());
    }

    #[test]
    fn the_hostname_is_not_checked() {
        // The leaf names localhost and loopback addresses only; nothing here
        // asks for a name at all, so a node reached as 192.168.0.10 verifies.
        let (ca, leaf) = dds_standin::ca_and_server_pem("Probe CA", false);
        let outcome = judge(&[der(&leaf)], &FileRead::Bytes(ca.into_bytes()), now());
        assert_eq!(outcome, Outcome::Verified);
    }

    #[test]
    fn a_missing_unreadable_or_empty_file_is_a_refusal() {
        let (_, leaf) = dds_standin::ca_and_server_pem("Probe CA", false);
        let chain = [der(&leaf)];
        let r = refusal(judge(&chain, &FileRead::Missing, now()));
        assert!(
            r.reason.contains("does not exist") && r.subjects.is_empty(),
            "{r:?}"
        );
        let r = refusal(judge(&chain, &FileRead::Error("a FIFO".into()), now()));
        assert!(r.reason.contains("a FIFO"), "{r:?}");
        let r = refusal(judge(&chain, &FileRead::Bytes(b"junk".to_vec()), now()));
        assert!(r.reason.contains("no certificate"), "{r:?}");
        let sm2 = dds_standin::sm2_cert_pem("Only SM2");
        let r = refusal(judge(&chain, &FileRead::Bytes(sm2.into_bytes()), now()));
        assert!(r.subjects[0].contains("Only SM2"), "{r:?}");
    }

    #[test]
    fn an_empty_or_unreadable_chain_is_a_refusal_not_a_panic() {
        let (ca, _) = dds_standin::ca_and_server_pem("Probe CA", false);
        let file = FileRead::Bytes(ca.into_bytes());
        let r = refusal(judge(&[], &file, now()));
        assert_eq!(r.issuer, "(no certificate)");
        let junk = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
        let r = refusal(judge(&[junk], &file, now()));
        assert_eq!(r.issuer, "(unreadable certificate)");
    }
}
