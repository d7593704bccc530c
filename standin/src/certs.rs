//! Certificate material of the stand-in.
//!
//! Two unrelated families live here:
//! * the TLS identity of the stand-in's listeners: one stand-in CA (made with
//!   `rcgen`) that issues a server certificate for `localhost`, `127.0.0.1`
//!   and `::1`;
//! * the *DDS* CA certificates that the download host serves: an ECDSA P-256
//!   CA certificate for the `international` category (rcgen) and a real
//!   SM2/SM3 certificate for `national`, assembled with the small DER writer
//!   in [`crate::der`] and signed with the RustCrypto `sm2` crate.
//!
//! It also holds the generators for bad-input tests (expired, not yet valid
//! and non-CA certificates, a private key block) and an X.509 v1 certificate
//! (no extensions at all, like old roots).

use std::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use sm2::dsa::SigningKey;
use sm2::dsa::signature::Signer;
use sm2::elliptic_curve::Generate;
use time::{Duration, OffsetDateTime};

use crate::der;

/// The `international` category name used by the DDS API.
pub const INTERNATIONAL: &str = "international";
/// The `national` (SM2/SM3) category name used by the DDS API.
pub const NATIONAL: &str = "national";

/// OID arcs of SM2-with-SM3 (`1.2.156.10197.1.501`).
pub const OID_SM2_WITH_SM3: &[u64] = &[1, 2, 156, 10197, 1, 501];
/// OID arcs of the SM2 curve (`1.2.156.10197.1.301`).
pub const OID_SM2_CURVE: &[u64] = &[1, 2, 156, 10197, 1, 301];
/// OID arcs of id-ecPublicKey (`1.2.840.10045.2.1`).
pub const OID_EC_PUBLIC_KEY: &[u64] = &[1, 2, 840, 10045, 2, 1];

/// The default SM2 distinguishing identifier (GM/T 0009), used by X.509.
const SM2_DEFAULT_DISTID: &str = "1234567812345678";

/// Failure while generating key or certificate material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertError(String);

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "certificate generation failed: {}", self.0)
    }
}

impl std::error::Error for CertError {}

impl CertError {
    pub(crate) fn new(message: impl Into<String>) -> CertError {
        CertError(message.into())
    }
}

impl From<rcgen::Error> for CertError {
    fn from(e: rcgen::Error) -> Self {
        CertError(e.to_string())
    }
}

/// The TLS identity shared by both listeners.
pub(crate) struct TlsIdentity {
    /// PEM of the stand-in CA, to be trusted by clients.
    pub(crate) ca_pem: String,
    /// Server certificate chain (leaf, then CA).
    pub(crate) chain: Vec<CertificateDer<'static>>,
    /// Private key of the leaf.
    pub(crate) key: PrivateKeyDer<'static>,
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "dds-standin");
    dn.push(DnType::CommonName, cn);
    dn
}

fn ca_params(cn: &str, not_before: OffsetDateTime, not_after: OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial().into());
    params
}

/// 16 random bytes, positive and non-zero when read as an INTEGER.
fn random_serial() -> Vec<u8> {
    let mut serial: Vec<u8> = (0..16).map(|_| fastrand::u8(..)).collect();
    serial[0] = (serial[0] & 0x7f) | 0x01;
    serial
}

/// Creates a fresh stand-in CA and a server certificate it signed.
pub(crate) fn tls_identity() -> Result<TlsIdentity, CertError> {
    ca_and_server("dds-standin TLS CA", "localhost", false)
}

/// A fresh CA (ECDSA P-256, valid from an hour ago for two years) and a
/// server certificate it issued for `localhost`, `127.0.0.1` and `::1`
/// (valid for a year; with `leaf_expired`, until yesterday). The chain
/// presented is the leaf, then the CA.
fn ca_and_server(ca_cn: &str, leaf_cn: &str, leaf_expired: bool) -> Result<TlsIdentity, CertError> {
    let now = OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate()?;
    let ca_params = ca_params(
        ca_cn,
        now - Duration::hours(1),
        now + Duration::days(2 * 365),
    );
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()])?;
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()));
    leaf.distinguished_name = name(leaf_cn);
    if leaf_expired {
        leaf.not_before = now - Duration::days(365);
        leaf.not_after = now - Duration::days(1);
    } else {
        leaf.not_before = now - Duration::hours(1);
        leaf.not_after = now + Duration::days(365);
    }
    leaf.serial_number = Some(random_serial().into());
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;

    Ok(TlsIdentity {
        ca_pem: ca_cert.pem(),
        chain: vec![leaf_cert.der().clone(), ca_cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    })
}

/// The CN of an instance's `international` CA of a generation.
fn international_cn(instance: &str, generation: u32) -> String {
    format!("DDS Stand-in CA {instance} gen {generation}")
}

/// A fresh ECDSA P-256 CA certificate for the `international` slot.
pub(crate) fn international_cert(instance: &str, generation: u32) -> Result<String, CertError> {
    Ok(international_ca(instance, generation)?.ca_pem)
}

/// A fresh `international` CA with a server certificate it issued, as the
/// instance's TLS listener presents it: the leaf alone, like a DDS node
/// (clients need the CA from the file to verify it).
pub(crate) fn international_ca(instance: &str, generation: u32) -> Result<TlsIdentity, CertError> {
    let mut identity = ca_and_server(
        &international_cn(instance, generation),
        &format!("DDS Stand-in node {instance} gen {generation}"),
        false,
    )?;
    identity.chain.truncate(1);
    Ok(identity)
}

/// A fresh SM2/SM3 CA certificate for the `national` slot.
pub(crate) fn national_cert(instance: &str, generation: u32) -> Result<String, CertError> {
    let now = OffsetDateTime::now_utc();
    build_sm2_cert(
        &format!("DDS Stand-in SM2 CA {instance} gen {generation}"),
        now - Duration::hours(1),
        now + Duration::days(2 * 365),
    )
}

/// Builds a self-signed SM2/SM3 CA certificate and returns it as PEM.
///
/// Structure: X.509 v3, subjectPublicKeyInfo = id-ecPublicKey with the SM2
/// curve as parameter, signatureAlgorithm = SM2-with-SM3 (no parameters),
/// extensions basicConstraints (CA, critical), keyUsage (critical) and
/// subjectKeyIdentifier.
pub(crate) fn build_sm2_cert(
    cn: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<String, CertError> {
    sm2_cert(cn, not_before, not_after, true)
}

/// A self-signed SM2/SM3 certificate; `v3: false` makes an X.509 v1
/// certificate: no version field, no extensions, so no basicConstraints.
fn sm2_cert(
    cn: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    v3: bool,
) -> Result<String, CertError> {
    let secret =
        sm2::SecretKey::try_generate().map_err(|e| CertError(format!("system RNG failed: {e}")))?;
    let point = secret.public_key().to_sec1_bytes(); // uncompressed 04||X||Y
    let signing_key = SigningKey::new(SM2_DEFAULT_DISTID, &secret)
        .map_err(|e| CertError(format!("SM2 signing key: {e}")))?;

    let sig_alg = der::sequence(&[&der::oid(OID_SM2_WITH_SM3)]);
    let subject = x509_name(cn);
    let spki = der::sequence(&[
        &der::sequence(&[&der::oid(OID_EC_PUBLIC_KEY), &der::oid(OID_SM2_CURVE)]),
        &der::bit_string(&point),
    ]);
    let ski = &Sha256::digest(&point)[..20];
    let extensions = der::sequence(&[
        // basicConstraints: cA = TRUE, critical
        &der::sequence(&[
            &der::oid(&[2, 5, 29, 19]),
            &der::boolean(true),
            &der::octet_string(&der::sequence(&[&der::boolean(true)])),
        ]),
        // keyUsage: digitalSignature, keyCertSign, cRLSign; critical
        &der::sequence(&[
            &der::oid(&[2, 5, 29, 15]),
            &der::boolean(true),
            &der::octet_string(&der::bit_string_with_unused(&[0x86], 1)),
        ]),
        // subjectKeyIdentifier
        &der::sequence(&[
            &der::oid(&[2, 5, 29, 14]),
            &der::octet_string(&der::octet_string(ski)),
        ]),
    ]);
    let version = der::explicit(0, &der::small_integer(2));
    let serial = der::unsigned_integer(&random_serial());
    let validity = der::sequence(&[&der::x509_time(not_before), &der::x509_time(not_after)]);
    let extensions = der::explicit(3, &extensions);
    let mut parts: Vec<&[u8]> = Vec::new();
    if v3 {
        parts.push(&version);
    }
    parts.extend([&serial[..], &sig_alg, &subject, &validity, &subject, &spki]);
    if v3 {
        parts.push(&extensions);
    }
    let tbs = der::sequence(&parts);
    let signature = signing_key
        .try_sign(&tbs)
        .map_err(|e| CertError(format!("SM2 signing: {e}")))?;
    let sig_der = der::sequence(&[
        &der::unsigned_integer(&signature.r_bytes()),
        &der::unsigned_integer(&signature.s_bytes()),
    ]);
    let cert = der::sequence(&[&tbs, &sig_alg, &der::bit_string(&sig_der)]);
    Ok(to_pem("CERTIFICATE", &cert))
}

fn x509_name(cn: &str) -> Vec<u8> {
    let rdn = |arcs: &[u64], value: &str| {
        der::set(&[&der::sequence(&[&der::oid(arcs), &der::utf8_string(value)])])
    };
    der::sequence(&[&rdn(&[2, 5, 4, 10], "dds-standin"), &rdn(&[2, 5, 4, 3], cn)])
}

/// Wraps DER bytes into a PEM block with 64-column base64 lines.
fn to_pem(label: &str, der_bytes: &[u8]) -> String {
    let b64 = base64_encode(der_bytes);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER of the first PEM block of `pem` (any label), if it has one whose
/// base64 decodes: what a download host serving DER sends.
pub fn pem_to_der(pem: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let text = std::str::from_utf8(pem).ok()?;
    let body = text.split("-----BEGIN ").nth(1)?;
    let body = body.split_once('\n')?.1;
    let b64: String = body
        .split("-----END ")
        .next()?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

fn base64_encode(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

/// A fresh CA and a server certificate it issued, both as PEM: `(ca, leaf)`.
/// The CA is named `ca_cn`; the leaf names `localhost`, `127.0.0.1` and `::1`
/// and is valid for a year, or with `leaf_expired` expired since yesterday.
///
/// # Panics
/// Only if the system RNG or the `ring` signer fails.
pub fn ca_and_server_pem(ca_cn: &str, leaf_expired: bool) -> (String, String) {
    let identity = ca_and_server(ca_cn, &format!("{ca_cn} server"), leaf_expired)
        .unwrap_or_else(|e| panic!("dds-standin: {e}"));
    (identity.ca_pem, to_pem("CERTIFICATE", &identity.chain[0]))
}

/// A syntactically valid X.509 CA certificate whose `notAfter` has passed
/// (valid from two years ago until yesterday).
///
/// # Panics
/// Only if the system RNG or the `ring` signer fails.
pub fn expired_cert_pem() -> String {
    let now = OffsetDateTime::now_utc();
    KeyPair::generate()
        .and_then(|key| {
            ca_params(
                "DDS Stand-in expired CA",
                now - Duration::days(2 * 365),
                now - Duration::days(1),
            )
            .self_signed(&key)
        })
        .map(|cert| cert.pem())
        .unwrap_or_else(|e| panic!("dds-standin: cannot generate expired certificate: {e}"))
}

/// A current self-signed CA certificate that expires `valid_for` from now
/// (valid since an hour ago): for a certificate that expires while a test
/// runs.
///
/// # Panics
/// Only if the system RNG or the `ring` signer fails.
pub fn short_lived_cert_pem(cn: &str, valid_for: std::time::Duration) -> String {
    let now = OffsetDateTime::now_utc();
    KeyPair::generate()
        .and_then(|key| ca_params(cn, now - Duration::hours(1), now + valid_for).self_signed(&key))
        .map(|cert| cert.pem())
        .unwrap_or_else(|e| panic!("dds-standin: cannot generate certificate: {e}"))
}

/// A syntactically valid X.509 CA certificate whose `notBefore` lies
/// `starts_in` in the future (valid for two years from then).
///
/// # Panics
/// Only if the system RNG or the `ring` signer fails.
pub fn not_yet_valid_cert_pem(starts_in: std::time::Duration) -> String {
    let start = OffsetDateTime::now_utc() + starts_in;
    KeyPair::generate()
        .and_then(|key| {
            ca_params(
                "DDS Stand-in not yet valid CA",
                start,
                start + Duration::days(2 * 365),
            )
            .self_signed(&key)
        })
        .map(|cert| cert.pem())
        .unwrap_or_else(|e| panic!("dds-standin: cannot generate certificate: {e}"))
}

/// A current self-signed certificate whose basicConstraints say `CA:FALSE`
/// (a server certificate, not a CA).
///
/// # Panics
/// Only if the system RNG or the `ring` signer fails.
pub fn non_ca_cert_pem() -> String {
    let now = OffsetDateTime::now_utc();
    let mut params = ca_params(
        "DDS Stand-in leaf, not a CA",
        now - Duration::hours(1),
        now + Duration::days(365),
    );
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    KeyPair::generate()
        .and_then(|key| params.self_signed(&key))
        .map(|cert| cert.pem())
        .unwrap_or_else(|e| panic!("dds-standin: cannot generate certificate: {e}"))
}

/// A current self-signed X.509 v1 certificate (SM2/SM3): no extensions, so
/// no basicConstraints, like old v1 roots.
///
/// # Panics
/// Only if the system RNG or the SM2 signer fails.
pub fn v1_cert_pem(cn: &str) -> String {
    let now = OffsetDateTime::now_utc();
    sm2_cert(
        cn,
        now - Duration::hours(1),
        now + Duration::days(5 * 365),
        false,
    )
    .unwrap_or_else(|e| panic!("dds-standin: {e}"))
}

/// A `-----BEGIN PRIVATE KEY-----` block (PKCS#8, ECDSA P-256).
///
/// # Panics
/// Only if the system RNG fails.
pub fn private_key_pem() -> String {
    KeyPair::generate()
        .map(|k| k.serialize_pem())
        .unwrap_or_else(|e| panic!("dds-standin: cannot generate private key: {e}"))
}

/// A self-signed SM2/SM3 CA certificate with the given common name, valid
/// from an hour ago for five years.
///
/// # Panics
/// Only if the system RNG or the SM2 signer fails.
pub fn sm2_cert_pem(cn: &str) -> String {
    let now = OffsetDateTime::now_utc();
    build_sm2_cert(cn, now - Duration::hours(1), now + Duration::days(5 * 365))
        .unwrap_or_else(|e| panic!("dds-standin: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(input.as_bytes()), expected, "input {input:?}");
        }
    }

    #[test]
    fn pem_to_der_undoes_to_pem() {
        let der = (0u8..=200).collect::<Vec<u8>>();
        assert_eq!(
            pem_to_der(to_pem("CERTIFICATE", &der).as_bytes()),
            Some(der)
        );
        assert_eq!(pem_to_der(b"no pem here"), None);
    }

    #[test]
    fn pem_lines_are_64_columns() {
        let pem = to_pem("CERTIFICATE", &[7u8; 100]);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines.first().copied(), Some("-----BEGIN CERTIFICATE-----"));
        assert_eq!(lines.last().copied(), Some("-----END CERTIFICATE-----"));
        assert_eq!(lines[1].len(), 64);
    }
}
