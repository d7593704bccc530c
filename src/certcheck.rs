//! Certificate checks: what a downloaded body must be before it may reach disk.
//!
//! A body is told apart by its content, never by its name: a zip (a local
//! file header `PK\x03\x04`, or the end record `PK\x05\x06` of an empty
//! archive), a DER certificate (an ASN.1 SEQUENCE whose length is binary or
//! spans the body exactly), or else PEM. A zip's certificate files are read
//! in memory under the bounds of [`archive`] (which members, what refuses
//! the archive); each of them, like a whole body, is DER or PEM. Whatever the
//! form, the certificates then meet the same rules, and a failure in a zip
//! member names it.
//!
//! PEM passes only if it holds nothing but `CERTIFICATE` blocks,
//! at least one, each a parseable X.509 certificate whose `notAfter` has not
//! passed and whose `notBefore` is at most [`CLOCK_SKEW`] ahead of now (a CA
//! file whose certificate is not yet valid breaks OpenSSL clients). A
//! certificate that says it is not a CA (basicConstraints `CA:FALSE`) is
//! refused unless [`Policy::allow_non_ca`]; one without basicConstraints at
//! all, such as an old X.509 v1 root, passes. Every line that mentions
//! `-----BEGIN` must be exactly a CERTIFICATE boundary. The PEM model
//! ([`certificate_blocks`]) is one, shared with [`inspect_pem`], which reads
//! files already on disk (always PEM: what a round wrote): what `verify`
//! refuses for its form is not a certificate file there either. SM2/SM3
//! ("national") certificates are parsed like any other; their
//! signatures are not verified (no Rust TLS stack can), only their structure and
//! dates. Everything else (private keys, other block types, HTML or XML error
//! pages, empty or truncated bodies, garbage base64) is refused with a reason.
//!
//! What passes is re-encoded canonically, whatever the form it came in: one
//! PEM block per distinct certificate, in the order received (a zip's
//! members in the order of its central directory), 64-column base64, LF line
//! ends. The file written is therefore exactly the certificates and nothing
//! else, and its SHA-256 is stable across cosmetic changes of the download: a
//! certificate served as PEM, as DER or zipped is the same file.
//!
//! Pure: no I/O. The caller supplies "now".
//!
//! The file runs past 500 lines for its unit tests, which sit beside the code
//! they pin (the code is under 470 lines).

pub mod archive;

use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};
use x509_parser::error::PEMError;
use x509_parser::pem::Pem;

/// The largest body accepted from the download host.
pub const MAX_BODY: usize = 1024 * 1024;

/// A SHA-256 digest.
pub type Sha256Digest = [u8; 32];

/// How far in the future a `notBefore` may lie: clocks differ a little.
pub const CLOCK_SKEW: i64 = 5 * 60;

/// What an instance's config allows beyond the default rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Accept certificates whose basicConstraints say `CA:FALSE`.
    pub allow_non_ca: bool,
}

/// What a certificate looks like, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
    /// basicConstraints' cA flag; `None` when the certificate has no
    /// basicConstraints (an X.509 v1 root, for one).
    pub ca: Option<bool>,
    /// The signature algorithm's OID, e.g. `1.2.156.10197.1.501` for SM2-with-SM3.
    pub signature_oid: String,
    /// The certificate itself (DER).
    pub der: Vec<u8>,
    /// The SHA-256 of [`CertInfo::der`]: the certificate's fingerprint, as
    /// `openssl x509 -fingerprint -sha256` shows it.
    pub fingerprint: Sha256Digest,
}

/// A body that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The canonical PEM to write.
    pub pem: Vec<u8>,
    pub sha256: Sha256Digest,
    pub certs: Vec<CertInfo>,
}

impl Verified {
    /// The earliest `notAfter` of the bundle.
    pub fn not_after(&self) -> i64 {
        self.certs.iter().map(|c| c.not_after).min().unwrap_or(0)
    }
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("empty body")]
    Empty,
    #[error("body larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("not a certificate: the body looks like an {0} page")]
    ErrorPage(&'static str),
    #[error("no PEM CERTIFICATE block in the body")]
    NoCertificate,
    #[error("refused PEM block {0:?}: only CERTIFICATE blocks are accepted")]
    ForbiddenBlock(String),
    #[error("malformed PEM: {0}")]
    BadPem(String),
    #[error("certificate #{index} is not valid X.509: {reason}")]
    BadCertificate { index: usize, reason: String },
    #[error("certificate #{index} ({subject}) expired at {not_after}")]
    Expired {
        index: usize,
        subject: String,
        not_after: String,
    },
    #[error(
        "certificate #{index} ({subject}) is not valid before {not_before}, more than 5 minutes from now (is this host's clock behind?)"
    )]
    NotYetValid {
        index: usize,
        subject: String,
        not_before: String,
    },
    #[error(
        "certificate #{index} ({subject}) is not a CA certificate (basicConstraints CA:FALSE); set allow_non_ca = true for this instance to accept it"
    )]
    NotCa { index: usize, subject: String },
    /// A zip download refused as an archive (see [`archive`]).
    #[error(transparent)]
    Archive(#[from] archive::ArchiveError),
    /// A zip member's content refused; `index` in the inner error counts
    /// within the member.
    #[error("zip member \"{member}\": {error}")]
    InMember {
        /// The member's name, escaped and capped ([`archive::shown_name`]).
        member: String,
        error: Box<VerifyError>,
    },
}

/// Certificates (DER) and where they came from: the body itself, or a zip
/// member (its shown name).
struct Source {
    member: Option<String>,
    ders: Vec<Vec<u8>>,
}

impl Source {
    /// An error about this source's certificates, naming the member if any.
    fn blame(&self, error: VerifyError) -> VerifyError {
        match &self.member {
            None => error,
            Some(member) => VerifyError::InMember {
                member: member.clone(),
                error: Box::new(error),
            },
        }
    }
}

/// The certificates of a body, told apart by content: a zip's certificate
/// members, or the body itself as DER or PEM.
fn sources(body: &[u8]) -> Result<Vec<Source>, VerifyError> {
    if body.len() > MAX_BODY {
        return Err(VerifyError::TooLarge);
    }
    if !archive::is_zip(body) {
        return Ok(vec![Source {
            member: None,
            ders: der_or_pem(body)?,
        }]);
    }
    archive::certificate_members(body)?
        .into_iter()
        .map(|m| {
            let mut source = Source {
                member: Some(m.name),
                ders: Vec::new(),
            };
            source.ders = der_or_pem(&m.bytes).map_err(|e| source.blame(e))?;
            Ok(source)
        })
        .collect()
}

/// A DER certificate (as is; [`inspect`] judges it), or else PEM
/// ([`certificate_blocks`]).
fn der_or_pem(bytes: &[u8]) -> Result<Vec<Vec<u8>>, VerifyError> {
    if is_der(bytes) {
        Ok(vec![bytes.to_vec()])
    } else {
        certificate_blocks(bytes)
    }
}

/// Does a body look like DER: an ASN.1 SEQUENCE whose length is in the long
/// (binary) form, which no text has, or in the short form spanning exactly
/// the body. PEM text never starts so. Pure.
pub fn is_der(body: &[u8]) -> bool {
    match body {
        [0x30, len, ..] if *len >= 0x80 => true,
        [0x30, len, rest @ ..] => rest.len() == usize::from(*len),
        _ => false,
    }
}

/// Checks a downloaded body under the default [`Policy`]. See the module
/// doc for the rules.
pub fn verify(body: &[u8], now: SystemTime) -> Result<Verified, VerifyError> {
    verify_with(body, now, Policy::default())
}

/// Checks a downloaded body under an instance's [`Policy`].
pub fn verify_with(body: &[u8], now: SystemTime, policy: Policy) -> Result<Verified, VerifyError> {
    let sources = sources(body)?;
    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);

    let mut certs = Vec::new();
    let mut seen: Vec<&[u8]> = Vec::new();
    for source in &sources {
        for (i, der) in source.ders.iter().enumerate() {
            let info = check(der, i + 1, now, policy).map_err(|e| source.blame(e))?;
            if seen.contains(&der.as_slice()) {
                continue;
            }
            seen.push(der);
            certs.push(info);
        }
    }
    let pem = pem_of(seen);
    Ok(Verified {
        sha256: sha256(&pem),
        pem,
        certs,
    })
}

/// One certificate against the rules: X.509, dates, CA. `index` counts from 1
/// within its source.
fn check(der: &[u8], index: usize, now: i64, policy: Policy) -> Result<CertInfo, VerifyError> {
    let info = inspect(der).map_err(|reason| VerifyError::BadCertificate { index, reason })?;
    if info.not_after < now {
        return Err(VerifyError::Expired {
            index,
            subject: info.subject,
            not_after: format_time(info.not_after),
        });
    }
    if info.not_before > now.saturating_add(CLOCK_SKEW) {
        return Err(VerifyError::NotYetValid {
            index,
            subject: info.subject,
            not_before: format_time(info.not_before),
        });
    }
    if info.ca == Some(false) && !policy.allow_non_ca {
        return Err(VerifyError::NotCa {
            index,
            subject: info.subject,
        });
    }
    Ok(info)
}

/// SHA-256 of some bytes.
pub fn sha256(bytes: &[u8]) -> Sha256Digest {
    Sha256::digest(bytes).into()
}

/// Lower-case hex of a digest.
pub fn hex(d: &Sha256Digest) -> String {
    hex::encode(d)
}

/// Reads the certificates of a file already on disk, for readiness and expiry
/// reporting: the same PEM model as [`verify`] ([`certificate_blocks`]), so
/// what `verify` refuses for its form (any other block, a hidden `BEGIN`
/// line, bad base64, a body that is not X.509) is `None` here too. Unlike
/// `verify`, it judges no dates and no [`Policy`]: an expired certificate is
/// read, and its date reported.
pub fn inspect_pem(body: &[u8]) -> Option<Vec<CertInfo>> {
    inspect_pem_knowing(body, &[])
}

/// [`inspect_pem`], taking each certificate whose SHA-256 is the fingerprint
/// of one of `known` (read already: served this round, or recorded) from
/// there instead of parsing it again. The answer is the same: the same DER
/// parses the same. Pure.
pub fn inspect_pem_knowing(body: &[u8], known: &[&CertInfo]) -> Option<Vec<CertInfo>> {
    let ders = certificate_blocks(body).ok()?;
    inspect_ders_knowing(ders.iter().map(Vec::as_slice), known)
}

/// Reads DER certificates (a truststore's entries), like [`inspect_pem`]:
/// `None` if one is not X.509.
pub fn inspect_ders<'a>(ders: impl IntoIterator<Item = &'a [u8]>) -> Option<Vec<CertInfo>> {
    inspect_ders_knowing(ders, &[])
}

/// [`inspect_ders`], with `known` as in [`inspect_pem_knowing`]. Pure.
pub fn inspect_ders_knowing<'a>(
    ders: impl IntoIterator<Item = &'a [u8]>,
    known: &[&CertInfo],
) -> Option<Vec<CertInfo>> {
    (ders.into_iter())
        .map(|der| known_or_inspect(der, known).ok())
        .collect()
}

/// The certificate `der`: one of `known` with its fingerprint, else parsed.
fn known_or_inspect(der: &[u8], known: &[&CertInfo]) -> Result<CertInfo, String> {
    if !known.is_empty() {
        let fingerprint = sha256(der);
        if let Some(c) = known.iter().find(|c| c.fingerprint == fingerprint) {
            return Ok((*c).clone());
        }
    }
    inspect(der)
}

/// The DER of every certificate in a body, in order: the one PEM model of
/// [`verify`] and [`inspect_pem`]. A body passes only if it is at most
/// [`MAX_BODY`], not blank, not an error page, every PEM block it holds is
/// labelled `CERTIFICATE` (the blocks are read by `x509_parser::pem`, which
/// sees every label), every line that mentions `-----BEGIN` is exactly a
/// CERTIFICATE boundary (the PEM reader skips lines that are not, and such a
/// line could hide a private key from every other check), and there is at
/// least one. Pure.
pub fn certificate_blocks(body: &[u8]) -> Result<Vec<Vec<u8>>, VerifyError> {
    if body.len() > MAX_BODY {
        return Err(VerifyError::TooLarge);
    }
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() {
        return Err(VerifyError::Empty);
    }
    if let Some(kind) = error_page_kind(trimmed) {
        return Err(VerifyError::ErrorPage(kind));
    }
    let mut ders: Vec<Vec<u8>> = Vec::new();
    for block in Pem::iter_from_buffer(body) {
        let block = block.map_err(|e| VerifyError::BadPem(pem_error(e)))?;
        if block.label != "CERTIFICATE" {
            return Err(VerifyError::ForbiddenBlock(printable(&block.label)));
        }
        ders.push(block.contents);
    }
    let begin_lines = certificate_boundaries(body)?;
    if ders.len() != begin_lines {
        // Every BEGIN line is a CERTIFICATE boundary, yet the reader found
        // a different number of blocks: something it skipped or misread.
        return Err(VerifyError::BadPem(format!(
            "{begin_lines} BEGIN CERTIFICATE line(s) but {} parsed block(s)",
            ders.len()
        )));
    }
    if ders.is_empty() {
        return Err(VerifyError::NoCertificate);
    }
    Ok(ders)
}

fn inspect(der: &[u8]) -> Result<CertInfo, String> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!(
            "{} trailing bytes after the certificate",
            rest.len()
        ));
    }
    let ca = cert
        .basic_constraints()
        .map_err(|e| format!("unreadable basicConstraints: {e}"))?
        .map(|b| b.value.ca);
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        ca,
        signature_oid: cert.signature_algorithm.algorithm.to_id_string(),
        der: der.to_vec(),
        fingerprint: sha256(der),
    })
}

/// The canonical PEM of some certificates (DER), in the order given: what
/// [`verify`] produces for a body holding exactly them.
pub fn pem_of<'a>(ders: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    pem_text(ders).into_bytes()
}

/// [`pem_of`], as text.
pub fn pem_text<'a>(ders: impl IntoIterator<Item = &'a [u8]>) -> String {
    let ders: Vec<&[u8]> = ders.into_iter().collect();
    let mut pem = String::with_capacity(ders.iter().map(|d| pem_len(d.len())).sum());
    for der in ders {
        write_pem(&mut pem, der);
    }
    pem
}

/// Formats Unix seconds as RFC 3339 UTC.
pub fn format_time(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

fn error_page_kind(body: &[u8]) -> Option<&'static str> {
    let head: Vec<u8> = body
        .iter()
        .take(256)
        .map(|b| b.to_ascii_lowercase())
        .collect();
    let has = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
    if head.starts_with(b"<!doctype html") || has(b"<html") || has(b"<body") {
        Some("HTML")
    } else if head.starts_with(b"<?xml") || head.starts_with(b"<error") {
        Some("XML")
    } else if head.starts_with(b"{") {
        Some("JSON")
    } else {
        None
    }
}

/// Counts the `-----BEGIN CERTIFICATE-----` lines of a body, refusing any
/// other line that mentions `-----BEGIN` anywhere (indented, prefixed, other
/// labels, any case): the PEM parser skips what it does not recognise as a
/// boundary, so such a line could hide a private key from every other check.
fn certificate_boundaries(body: &[u8]) -> Result<usize, VerifyError> {
    const BEGIN: &[u8] = b"-----begin";
    let mut n = 0;
    for line in body.split(|b| *b == b'\n' || *b == b'\r') {
        let lower = line.to_ascii_lowercase();
        let Some(at) = lower.windows(BEGIN.len()).position(|w| w == BEGIN) else {
            continue;
        };
        if line.trim_ascii_end() == b"-----BEGIN CERTIFICATE-----" {
            n += 1;
            continue;
        }
        let rest = String::from_utf8_lossy(&line[at + BEGIN.len()..]);
        return Err(VerifyError::ForbiddenBlock(printable(
            rest.trim().trim_end_matches('-').trim(),
        )));
    }
    Ok(n)
}

/// A block label for an error message: at most 40 characters, control
/// characters blanked, `unknown` if empty.
fn printable(label: &str) -> String {
    let label: String = label
        .chars()
        .take(40)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if label.is_empty() {
        "unknown".into()
    } else {
        label
    }
}

fn pem_error(e: PEMError) -> String {
    match e {
        PEMError::IncompletePEM => "a block has no END line (truncated?)".into(),
        PEMError::InvalidHeader => "malformed BEGIN line".into(),
        PEMError::Base64DecodeError => "invalid base64 inside a block".into(),
        other => other.to_string(),
    }
}

const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----\n";
const PEM_END: &str = "-----END CERTIFICATE-----\n";
/// The DER bytes of one full PEM line: 48 bytes are 64 base64 characters.
const PEM_LINE_BYTES: usize = 48;

/// The length of [`write_pem`]'s text for `n` bytes of DER.
fn pem_len(n: usize) -> usize {
    PEM_BEGIN.len() + n.div_ceil(3) * 4 + n.div_ceil(PEM_LINE_BYTES) + PEM_END.len()
}

/// Appends one certificate's PEM: lines of 64 base64 characters. Each line
/// is encoded from its own 48 bytes (a multiple of 3, so only the last line
/// can hold padding): the same text as splitting the whole encoding, without
/// building it first.
fn write_pem(out: &mut String, der: &[u8]) {
    use base64::Engine as _;
    out.push_str(PEM_BEGIN);
    for line in der.chunks(PEM_LINE_BYTES) {
        base64::engine::general_purpose::STANDARD.encode_string(line, out);
        out.push('\n');
    }
    out.push_str(PEM_END);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    // A self-signed P-256 certificate valid 2026-01-01 .. 2036-01-01, made for these tests.
    pub(crate) const CERT_A: &str = include_str!("../tests/data/cert-a.pem");
    // SM2-with-SM3, valid 2026-01-01 .. 2036-01-01.
    const CERT_SM2: &str = include_str!("../tests/data/cert-sm2.pem");
    // Valid 2020-01-01 .. 2021-01-01.
    const CERT_EXPIRED: &str = include_str!("../tests/data/cert-expired.pem");
    const KEY: &str = include_str!("../tests/data/key.pem");

    #[test]
    fn a_known_certificate_is_taken_as_known_and_the_answer_is_the_same() {
        let body = [CERT_A, CERT_SM2, CERT_EXPIRED].concat();
        let all = inspect_pem(body.as_bytes()).unwrap();
        let a = &all[0];
        let sm2 = &all[1];
        // Some known, some not: the same certificates, in the file's order.
        for known in [vec![], vec![a], vec![sm2, a], vec![&all[2], sm2, a]] {
            assert_eq!(
                inspect_pem_knowing(body.as_bytes(), &known),
                Some(all.clone())
            );
        }
        // Taken from `known` by fingerprint, not parsed again (a doctored
        // copy shows which was used); another fingerprint is never taken.
        let mut doctored = a.clone();
        doctored.subject = "CN=from known".into();
        let got = inspect_pem_knowing(CERT_A.as_bytes(), &[&doctored]).unwrap();
        assert_eq!(got[0].subject, "CN=from known");
        doctored.fingerprint = [0; 32];
        let got = inspect_pem_knowing(CERT_A.as_bytes(), &[&doctored]).unwrap();
        assert_eq!(got[0], *a);
        // What the body refuses stays refused, whatever is known.
        let with_key = [CERT_A, KEY].concat();
        assert_eq!(inspect_pem_knowing(with_key.as_bytes(), &[a]), None);
        let ders = [a.der.as_slice(), b"not a certificate"];
        assert_eq!(inspect_ders_knowing(ders, &[a]), None);
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_000_000) // 2026-11-18
    }

    #[test]
    fn accepts_a_certificate_and_canonicalises_it() {
        let v = verify(CERT_A.as_bytes(), now()).unwrap();
        assert_eq!(v.certs.len(), 1);
        assert_eq!(v.pem, CERT_A.as_bytes(), "fixture is already canonical");
        // CRLF and surrounding text do not change the result.
        let noisy = format!("subject=whatever\r\n{}\r\n", CERT_A.replace('\n', "\r\n"));
        let v2 = verify(noisy.as_bytes(), now()).unwrap();
        assert_eq!(v2.sha256, v.sha256);
    }

    #[test]
    fn accepts_sm2_and_reports_its_oid() {
        let v = verify(CERT_SM2.as_bytes(), now()).unwrap();
        assert_eq!(v.certs[0].signature_oid, "1.2.156.10197.1.501");
    }

    #[test]
    fn chains_are_kept_in_order_and_deduplicated() {
        let body = format!("{CERT_A}{CERT_SM2}{CERT_A}");
        let v = verify(body.as_bytes(), now()).unwrap();
        assert_eq!(v.certs.len(), 2);
        assert_eq!(v.pem, format!("{CERT_A}{CERT_SM2}").as_bytes());
    }

    #[test]
    fn refuses_private_keys_even_next_to_a_certificate() {
        let body = format!("{CERT_A}{KEY}");
        assert!(matches!(
            verify(body.as_bytes(), now()),
            Err(VerifyError::ForbiddenBlock(b)) if b == "PRIVATE KEY"
        ));
    }

    #[test]
    fn an_indented_or_prefixed_private_key_block_is_refused() {
        for prefix in ["  ", "\t", "x", "# "] {
            let hidden = KEY
                .lines()
                .map(|l| format!("{prefix}{l}\n"))
                .collect::<String>();
            let body = format!("{CERT_A}{hidden}");
            assert_eq!(
                verify(body.as_bytes(), now()),
                Err(VerifyError::ForbiddenBlock("PRIVATE KEY".into())),
                "prefix {prefix:?}"
            );
        }
        // A BEGIN line that is not exactly a CERTIFICATE boundary, even one
        // saying CERTIFICATE, is refused rather than skipped.
        let body = format!("{CERT_A} -----BEGIN CERTIFICATE-----\n");
        assert!(verify(body.as_bytes(), now()).is_err());
    }

    #[test]
    fn refuses_unknown_blocks() {
        let body = format!("{CERT_A}-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n");
        assert_eq!(
            verify(body.as_bytes(), now()),
            Err(VerifyError::ForbiddenBlock("FOO".into()))
        );
    }

    #[test]
    fn refuses_error_pages_and_empty_bodies() {
        assert_eq!(verify(b"", now()), Err(VerifyError::Empty));
        assert_eq!(verify(b" \n\t", now()), Err(VerifyError::Empty));
        assert_eq!(
            verify(b"<!DOCTYPE html><html><body>502</body></html>", now()),
            Err(VerifyError::ErrorPage("HTML"))
        );
        assert_eq!(
            verify(
                b"<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code></Error>",
                now()
            ),
            Err(VerifyError::ErrorPage("XML"))
        );
        assert_eq!(verify(b"hello", now()), Err(VerifyError::NoCertificate));
        // Each sign alone is enough.
        for (body, kind) in [
            (&b"<!doctype html>502"[..], "HTML"),
            (b"  <HTML>502</HTML>", "HTML"),
            (b"oops <body>502</body>", "HTML"),
            (b"<?xml version=\"1.0\"?>", "XML"),
            (b"<Error><Code>NoSuchKey</Code></Error>", "XML"),
            (b"{\"error_code\":\"DBS.0001\"}", "JSON"),
        ] {
            assert_eq!(
                verify(body, now()),
                Err(VerifyError::ErrorPage(kind)),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn refuses_truncated_bodies() {
        let half = &CERT_A.as_bytes()[..CERT_A.len() / 2];
        assert_eq!(
            verify(half, now()),
            Err(VerifyError::BadPem(
                "a block has no END line (truncated?)".into()
            ))
        );
        // Cut right after a full base64 line: still no END line.
        let cut = CERT_A.rfind("-----END").unwrap();
        assert!(matches!(
            verify(&CERT_A.as_bytes()[..cut], now()),
            Err(VerifyError::BadPem(_))
        ));
    }

    #[test]
    fn refuses_garbage_base64_and_non_x509_der() {
        let garbage = "-----BEGIN CERTIFICATE-----\n!!!notbase64***\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            verify(garbage.as_bytes(), now()),
            Err(VerifyError::BadPem(_))
        ));
        let not_x509 = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            verify(not_x509.as_bytes(), now()),
            Err(VerifyError::BadCertificate { index: 1, .. })
        ));
    }

    #[test]
    fn refuses_expired_certificates() {
        let e = verify(CERT_EXPIRED.as_bytes(), now()).unwrap_err();
        assert!(matches!(e, VerifyError::Expired { index: 1, .. }), "{e}");
        assert!(e.to_string().contains("2021-01-01"), "{e}");
    }

    #[test]
    fn refuses_a_certificate_not_yet_valid_beyond_five_minutes_of_skew() {
        // CERT_A is valid from 2026-01-01T00:00:00Z.
        let start = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let v = verify(CERT_A.as_bytes(), start - Duration::from_secs(4 * 60)).unwrap();
        assert_eq!(v.certs[0].not_before, 1_767_225_600);
        let e = verify(CERT_A.as_bytes(), start - Duration::from_secs(6 * 60)).unwrap_err();
        assert!(
            matches!(e, VerifyError::NotYetValid { index: 1, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("dds-certsync test CA A"), "{e}");
        assert!(e.to_string().contains("2026-01-01T00:00:00Z"), "{e}");
        // Also when it is only one certificate of a chain.
        let fresh = dds_standin::not_yet_valid_cert_pem(Duration::from_secs(3600));
        let body = format!("{CERT_SM2}{fresh}");
        let e = verify(body.as_bytes(), SystemTime::now()).unwrap_err();
        assert!(
            matches!(e, VerifyError::NotYetValid { index: 2, .. }),
            "{e}"
        );
    }

    #[test]
    fn refuses_a_non_ca_certificate_unless_allowed_and_accepts_one_without_basic_constraints() {
        let leaf = dds_standin::non_ca_cert_pem();
        let e = verify(leaf.as_bytes(), SystemTime::now()).unwrap_err();
        assert!(matches!(e, VerifyError::NotCa { index: 1, .. }), "{e}");
        assert!(e.to_string().contains("not a CA"), "{e}");
        assert!(e.to_string().contains("allow_non_ca"), "{e}");
        assert!(
            e.to_string().contains("leaf, not a CA"),
            "subject named: {e}"
        );
        let allowed = Policy { allow_non_ca: true };
        let v = verify_with(leaf.as_bytes(), SystemTime::now(), allowed).unwrap();
        assert_eq!(v.certs[0].ca, Some(false));
        // An X.509 v1 root has no basicConstraints at all: accepted.
        let v1 = dds_standin::v1_cert_pem("old v1 root");
        let v = verify(v1.as_bytes(), SystemTime::now()).unwrap();
        assert_eq!(v.certs[0].ca, None);
        assert!(v.certs[0].subject.contains("old v1 root"));
        // A CA says so.
        assert_eq!(
            verify(CERT_A.as_bytes(), now()).unwrap().certs[0].ca,
            Some(true)
        );
    }

    #[test]
    fn refuses_oversized_bodies() {
        let big = vec![b'A'; MAX_BODY + 1];
        assert_eq!(verify(&big, now()), Err(VerifyError::TooLarge));
    }

    #[test]
    fn the_size_limit_is_exactly_one_mib() {
        // A certificate padded with blank lines to the documented 1 MiB is
        // judged on its content; one byte more is too large whatever it holds.
        let mut body = CERT_A.as_bytes().to_vec();
        body.resize(1024 * 1024, b'\n');
        assert!(verify(&body, now()).is_ok());
        body.push(b'\n');
        assert_eq!(verify(&body, now()), Err(VerifyError::TooLarge));
    }

    #[test]
    fn a_bundle_expires_with_its_first_certificate_to_expire() {
        let info = verify(CERT_A.as_bytes(), now()).unwrap().certs.remove(0);
        let expiring = |not_after| CertInfo {
            not_after,
            ..info.clone()
        };
        for order in [
            [2_000_000_000, 1_900_000_000],
            [1_900_000_000, 2_000_000_000],
        ] {
            let v = Verified {
                pem: Vec::new(),
                sha256: [0; 32],
                certs: order.iter().map(|&n| expiring(n)).collect(),
            };
            assert_eq!(v.not_after(), 1_900_000_000);
        }
    }

    #[test]
    fn validity_bounds_are_inclusive_and_the_skew_is_exactly_five_minutes() {
        let info = verify(CERT_A.as_bytes(), now()).unwrap().certs.remove(0);
        let at = |secs: i64| UNIX_EPOCH + Duration::from_secs(secs as u64);
        // Valid through the second of notAfter, expired one second later.
        assert!(verify(CERT_A.as_bytes(), at(info.not_after)).is_ok());
        assert!(matches!(
            verify(CERT_A.as_bytes(), at(info.not_after + 1)),
            Err(VerifyError::Expired { .. })
        ));
        // Accepted while notBefore is at most CLOCK_SKEW ahead of the clock.
        let earliest = info.not_before - CLOCK_SKEW;
        assert!(verify(CERT_A.as_bytes(), at(earliest)).is_ok());
        assert!(matches!(
            verify(CERT_A.as_bytes(), at(earliest - 1)),
            Err(VerifyError::NotYetValid { .. })
        ));
    }

    #[test]
    fn inspecting_a_file_on_disk_reads_expired_certificates_and_refuses_anything_else() {
        let both = inspect_pem(format!("{CERT_A}{CERT_EXPIRED}").as_bytes()).unwrap();
        assert_eq!(both.len(), 2);
        assert_eq!(both[0], verify(CERT_A.as_bytes(), now()).unwrap().certs[0]);
        assert_eq!(both[1].subject, "CN=dds-certsync test expired");
        assert!(both[1].not_after < both[1].not_before + 10 * 366 * 86_400);
        assert_eq!(inspect_pem(b""), None);
        assert_eq!(inspect_pem(format!("{CERT_A}{KEY}").as_bytes()), None);
        assert_eq!(
            inspect_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            None
        );
    }

    #[test]
    fn inspecting_and_verifying_share_one_pem_model() {
        let key_block = KEY.lines().map(|l| format!("  {l}\n")).collect::<String>();
        for body in [
            format!("{CERT_A}-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n"),
            format!("{CERT_A}{KEY}"),
            format!("{CERT_A}{key_block}"),
            format!("{CERT_A} -----BEGIN CERTIFICATE-----\n"),
            format!("{CERT_A}-----begin certificate-----\n"),
            format!("<html>{CERT_A}"),
            CERT_A.replace(
                "-----BEGIN CERTIFICATE-----",
                "\u{0}\r-----BEGIN CERTIFICATE-----",
            ),
        ] {
            assert!(verify(body.as_bytes(), now()).is_err(), "{body}");
            assert_eq!(inspect_pem(body.as_bytes()), None, "{body}");
        }
        // Dates are not form: an expired certificate is read, and refused
        // only by `verify`.
        assert!(verify(CERT_EXPIRED.as_bytes(), now()).is_err());
        assert_eq!(
            inspect_pem(CERT_EXPIRED.as_bytes()).map(|c| c.len()),
            Some(1)
        );
    }

    #[test]
    fn a_certificate_boundary_the_pem_reader_cannot_see_is_refused() {
        // A byte that is not UTF-8 on the BEGIN line, before a carriage
        // return: the line scan sees a boundary, the PEM reader skips the
        // line and with it the whole block.
        let hidden = CERT_A.replacen(
            "-----BEGIN CERTIFICATE-----",
            "\u{ff}-----BEGIN CERTIFICATE-----",
            1,
        );
        let mut body = hidden.into_bytes();
        let at = body.iter().position(|b| *b == 0xc3).unwrap();
        body.splice(at..at + 2, [0xff, b'\r']);
        assert_eq!(
            verify(&body, now()),
            Err(VerifyError::BadPem(
                "1 BEGIN CERTIFICATE line(s) but 0 parsed block(s)".into()
            ))
        );
        assert_eq!(inspect_pem(&body), None);
    }

    #[test]
    fn pem_lines_are_the_whole_encoding_cut_every_64_characters() {
        use base64::Engine as _;
        assert_eq!(
            String::from_utf8(pem_of([b"foobar".as_slice()])).unwrap(),
            "-----BEGIN CERTIFICATE-----\nZm9vYmFy\n-----END CERTIFICATE-----\n"
        );
        for n in [1, 2, 3, 47, 48, 49, 95, 96, 97, 1000, 1201] {
            let der: Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
            let whole = base64::engine::general_purpose::STANDARD.encode(&der);
            let lines: Vec<&str> = whole
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            let expected = format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                lines.join("\n")
            );
            let two = pem_of([der.as_slice(), der.as_slice()]);
            assert_eq!(
                String::from_utf8(two).unwrap(),
                expected.repeat(2),
                "{n} bytes"
            );
            assert_eq!(pem_len(n), expected.len(), "{n} bytes");
            assert_eq!(certificate_blocks(expected.as_bytes()).unwrap(), [der]);
        }
    }
}
