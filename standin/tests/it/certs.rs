//! The certificates the download host serves, and the bad-input helpers,
//! checked with x509-parser.

use dds_standin::{StandIn, expired_cert_pem, private_key_pem, sm2_cert_pem};
use sm2::dsa::signature::Verifier;
use sm2::dsa::{Signature, VerifyingKey};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{INSTANCE, PROJECT};

fn der_of(pem_text: &str) -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes()).expect("PEM");
    assert_eq!(pem.label, "CERTIFICATE");
    pem.contents
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = X509Certificate::from_der(der).expect("X.509");
    assert!(rest.is_empty(), "trailing bytes after the certificate");
    cert
}

fn assert_close(actual: OffsetDateTime, expected: OffsetDateTime) {
    let diff = (actual - expected).abs();
    assert!(
        diff < Duration::minutes(5),
        "{actual} is not close to {expected}"
    );
}

fn cn(cert: &X509Certificate<'_>) -> String {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Checks the SM2/SM3 structure and verifies the signature with the public
/// key in the certificate (self-signed).
fn assert_sm2_cert(cert: &X509Certificate<'_>) {
    assert_eq!(
        cert.signature_algorithm.algorithm.to_id_string(),
        "1.2.156.10197.1.501"
    );
    assert_eq!(
        cert.tbs_certificate.signature.algorithm.to_id_string(),
        "1.2.156.10197.1.501"
    );
    let spki = cert.public_key();
    assert_eq!(spki.algorithm.algorithm.to_id_string(), "1.2.840.10045.2.1");
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .expect("curve parameter");
    assert_eq!(curve.to_id_string(), "1.2.156.10197.1.301");
    assert_eq!(cert.version(), x509_parser::x509::X509Version::V3);
    assert!(cert.is_ca());
    assert_eq!(cert.subject(), cert.issuer());

    let key = VerifyingKey::from_sec1_bytes("1234567812345678", &spki.subject_public_key.data)
        .expect("SM2 public key");
    let (_, sig) = x509_parser::der_parser::parse_der(&cert.signature_value.data).expect("sig DER");
    let seq = sig.as_sequence().expect("SEQUENCE");
    let r = seq[0].as_slice().expect("r");
    let s = seq[1].as_slice().expect("s");
    let pad = |x: &[u8]| {
        let x = &x[x.len().saturating_sub(32)..];
        let mut out = [0u8; 32];
        out[32 - x.len()..].copy_from_slice(x);
        out
    };
    let mut raw = [0u8; 64];
    raw[..32].copy_from_slice(&pad(r));
    raw[32..].copy_from_slice(&pad(s));
    let signature = Signature::from_slice(&raw).expect("signature");
    key.verify(cert.tbs_certificate.as_ref(), &signature)
        .expect("the SM2 signature verifies over the TBS bytes");
}

#[test]
fn national_certificate_is_sm2_with_sm3_valid_two_years() {
    let standin = StandIn::start();
    standin.add_instance(PROJECT, INSTANCE);
    let der = der_of(&standin.cert_pem(INSTANCE, "national"));
    let cert = parse(&der);
    assert_sm2_cert(&cert);
    assert_eq!(cn(&cert), format!("DDS Stand-in SM2 CA {INSTANCE} gen 1"));
    let now = OffsetDateTime::now_utc();
    assert_close(
        cert.validity().not_before.to_datetime(),
        now - Duration::hours(1),
    );
    assert_close(
        cert.validity().not_after.to_datetime(),
        now + Duration::days(730),
    );
    assert!(cert.validity().is_valid());

    let rotated = standin.rotate(INSTANCE, "national");
    let rotated_der = der_of(&rotated);
    let rotated_cert = parse(&rotated_der);
    assert_sm2_cert(&rotated_cert);
    assert_eq!(
        cn(&rotated_cert),
        format!("DDS Stand-in SM2 CA {INSTANCE} gen 2")
    );
    assert_ne!(
        cert.public_key().raw,
        rotated_cert.public_key().raw,
        "new key per rotation"
    );
    assert_ne!(cert.raw_serial(), rotated_cert.raw_serial());
}

#[test]
fn international_certificate_is_a_valid_ca() {
    let standin = StandIn::start();
    standin.add_instance(PROJECT, INSTANCE);
    let der = der_of(&standin.cert_pem(INSTANCE, "international"));
    let cert = parse(&der);
    assert!(cert.is_ca());
    assert!(cert.validity().is_valid());
    assert_eq!(cn(&cert), format!("DDS Stand-in CA {INSTANCE} gen 1"));
    assert_eq!(
        cert.signature_algorithm.algorithm.to_id_string(),
        "1.2.840.10045.4.3.2"
    );
    let now = OffsetDateTime::now_utc();
    assert_close(
        cert.validity().not_after.to_datetime(),
        now + Duration::days(730),
    );
}

#[test]
fn sm2_helper_is_valid_for_years() {
    let pem = sm2_cert_pem("Helper SM2");
    let der = der_of(&pem);
    let cert = parse(&der);
    assert_sm2_cert(&cert);
    assert_eq!(cn(&cert), "Helper SM2");
    let remaining = cert.validity().time_to_expiration().expect("not expired");
    assert!(remaining > Duration::days(4 * 365), "{remaining:?}");
}

#[test]
fn expired_helper_has_passed_its_not_after() {
    let der = der_of(&expired_cert_pem());
    let cert = parse(&der);
    assert!(!cert.validity().is_valid());
    assert!(cert.validity().not_after.to_datetime() < OffsetDateTime::now_utc());
    assert!(cert.validity().not_before.to_datetime() < cert.validity().not_after.to_datetime());
}

#[test]
fn private_key_helper_is_a_private_key_block() {
    let pem = private_key_pem();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
    assert_eq!(block.label, "PRIVATE KEY");
}
