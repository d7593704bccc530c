//! Java truststores: a PKCS#12 file of trusted-certificate entries, built
//! from the verified PEM of the `international` category.
//!
//! Java's drivers (and Spring) do not read a PEM CA file; they read a
//! `KeyStore`. A PKCS#12 entry that Java lists as `trustedCertEntry` is a
//! certificate bag carrying Oracle's trusted-key-usage attribute (OID
//! 2.16.840.1.113894.746875.1.1), which [`p12_keystore`] writes. The store
//! holds no private key: its password protects integrity only (Java's
//! convention for truststores is `changeit`).
//!
//! **What "unchanged" means.** A PKCS#12 file is not byte-deterministic: each
//! write draws new salts and IVs, so two stores of the same certificates
//! differ byte for byte. A store on disk is *equal* to the one a round would
//! write when, and only when:
//!
//! * its format parameters (MAC digest and iterations, encryption scheme,
//!   key derivation and iterations; never salts or IVs) are exactly those of
//!   the configured [`Profile`], read from its ASN.1 structure before any key
//!   derivation (so a planted file with a huge iteration count costs nothing);
//! * it opens with the configured password (its MAC verifies);
//! * it holds exactly the expected entries: the same aliases and the same
//!   certificates, every one a trusted-certificate entry, and nothing else
//!   (no key, no secret, no plain certificate).
//!
//! [`identity`] is a SHA-256 over the profile and the entries: what the
//! planner, the hook ledger and the self-healing compare, in place of a
//! file's SHA-256. It does not cover the password (a hash of a short password
//! next to public data would be brute-forced from the logs); the password is
//! covered by the MAC instead: a store that does not open with the configured
//! password has, as [`identity_on_disk`], the SHA-256 of its raw bytes, which
//! is never an identity. So a changed password, profile or certificate set
//! rewrites the store; an unchanged upstream never does.
//!
//! The decision was between this and a digest of the inputs kept in a file
//! beside the store (cert-manager's trust-manager does that). Decoding needs
//! no second file in the user's directory, and it sees what is actually on
//! disk: a store altered, truncated or replaced by a neighbour differs,
//! whatever a side file says.
//!
//! Pure: no I/O, no clock. Randomness only in [`encode`] (salts and IVs).
//!
//! Slightly over 500 lines: the ASN.1 structures that read a store's format
//! parameters before any key derivation (about 150 lines of declarations) sit
//! beside the code that relies on them; the tests are in `tests.rs`.

use std::fmt;

use der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef};
use der::{Decode, Sequence};
use p12_keystore::{Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm};
use sha2::{Digest, Sha256};

use crate::certcheck::{Sha256Digest, sha256};
use crate::secret::Secret;

/// The iteration count of every key derivation in a store we write: the JDK's
/// own default for PKCS#12 (`keystore.pkcs12.*IterationCount`).
const ITERATIONS: u32 = 10_000;

/// The password Java uses by convention for truststores (`cacerts` ships
/// with it): a truststore holds no secret, its password guards integrity.
pub const DEFAULT_PASSWORD: &str = "changeit";

/// Whether `password` can protect a store every JDK opens: printable ASCII
/// only. JDKs disagree on other characters (measured: JDK 17 opens neither
/// profile's store made with `pässwörd`, JDK 25 only the modern one).
pub fn check_password(password: &Secret) -> Result<(), &'static str> {
    let p = password.expose();
    if p.is_empty() {
        return Err("must not be empty");
    }
    if !p.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(
            "must be printable ASCII (letters, digits, punctuation, space): JDKs do not agree on how other characters protect a PKCS#12 file",
        );
    }
    Ok(())
}

/// How a store is encrypted and MACed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Profile {
    /// PBES2 (PBKDF2 with HMAC-SHA256, AES-256-CBC) and an HMAC-SHA256 MAC:
    /// the JDK's own default since JDK 12 (and 8u301, 11.0.12).
    #[default]
    Modern,
    /// PBE with SHA-1 and 3-key triple DES, and an HMAC-SHA1 MAC: what older
    /// JDKs write and read.
    Legacy,
}

impl Profile {
    /// The name used in the config (`truststore_profile`).
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Modern => "modern",
            Profile::Legacy => "legacy",
        }
    }

    /// Parses a config value.
    pub fn parse(s: &str) -> Option<Profile> {
        match s {
            "modern" => Some(Profile::Modern),
            "legacy" => Some(Profile::Legacy),
            _ => None,
        }
    }

    /// The format parameters a store of this profile has, as [`params_of`]
    /// describes them.
    fn expected_params(self) -> &'static str {
        match self {
            Profile::Modern => {
                "mac=2.16.840.1.101.3.4.2.1/10000; safes=[encrypted:pbes2(pbkdf2/10000/prf=1.2.840.113549.2.9; cipher=2.16.840.1.101.3.4.1.42), data]"
            }
            Profile::Legacy => {
                "mac=1.3.14.3.2.26/10000; safes=[encrypted:1.2.840.113549.1.12.1.3/10000, data]"
            }
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One trusted-certificate entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub alias: String,
    pub der: Vec<u8>,
}

/// Why a store could not be built, or why the one on disk is not the
/// expected one. Never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the PEM holds no certificate")]
    NoCertificate,
    #[error("a certificate cannot be parsed: {0}")]
    BadCertificate(String),
    #[error("cannot encode the store: {0}")]
    Encode(String),
    #[error("is not a PKCS#12 file ({0})")]
    NotPkcs12(String),
    #[error("its format ({found}) is not the configured profile {profile}")]
    OtherFormat { found: String, profile: Profile },
    #[error("does not open with the configured password, or was altered ({0})")]
    DoesNotOpen(String),
    #[error("holds {0}, which a truststore written by dds-certsync never does")]
    ForeignContent(&'static str),
}

/// The certificates of a (canonical) PEM bundle as truststore entries:
/// duplicates removed, sorted by alias, aliases unique.
pub fn entries_from_pem(pem: &[u8]) -> Result<Vec<Entry>, StoreError> {
    let mut ders: Vec<Vec<u8>> = Vec::new();
    let blocks = crate::certcheck::certificate_blocks(pem).map_err(|e| match e {
        crate::certcheck::VerifyError::Empty | crate::certcheck::VerifyError::NoCertificate => {
            StoreError::NoCertificate
        }
        e => StoreError::BadCertificate(e.to_string()),
    })?;
    for der in blocks {
        if !ders.contains(&der) {
            ders.push(der);
        }
    }
    let named: Vec<(String, String)> = ders
        .iter()
        .map(|d| Ok((alias_base(d)?, crate::certcheck::hex(&sha256(d)))))
        .collect::<Result<_, StoreError>>()?;
    let mut entries: Vec<Entry> = assign_aliases(&named)
        .into_iter()
        .zip(ders)
        .map(|(alias, der)| Entry { alias, der })
        .collect();
    entries.sort();
    Ok(entries)
}

/// Aliases for certificates given as (name, hex SHA-256): the name and 8 hex
/// digits, unique in practice; should two certificates of one name share
/// them, both get 16, then all 64. So an alias depends only on the
/// certificate, unless such a clash is in the same set.
fn assign_aliases(named: &[(String, String)]) -> Vec<String> {
    named
        .iter()
        .enumerate()
        .map(|(i, (base, hex))| {
            let clash = |len: usize| {
                named
                    .iter()
                    .enumerate()
                    .any(|(j, (b, h))| j != i && b == base && h != hex && h[..len] == hex[..len])
            };
            let len = [8, 16]
                .into_iter()
                .find(|&l| !clash(l))
                .unwrap_or(hex.len());
            format!("{base}-{}", &hex[..len])
        })
        .collect()
}

/// The readable part of an alias: the subject's common name, lower case,
/// with anything but `a-z 0-9 . _ -` turned into `-`, at most 48 characters;
/// `ca` when there is no usable common name. (Java lowercases PKCS#12 aliases.)
fn alias_base(der: &[u8]) -> Result<String, StoreError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| StoreError::BadCertificate(e.to_string()))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("");
    let mut out = String::new();
    for ch in cn.chars().flat_map(char::to_lowercase) {
        let c = if ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-') {
            ch
        } else {
            '-'
        };
        if !(c == '-' && (out.is_empty() || out.ends_with('-'))) {
            out.push(c);
        }
        if out.len() >= 48 {
            break;
        }
    }
    let out = out.trim_end_matches('-');
    Ok(if out.is_empty() {
        "ca".to_string()
    } else {
        out.to_string()
    })
}

/// The identity of a store: a SHA-256 over the profile and the entries, in
/// alias order. Equal identities mean equal stores (see the module doc).
pub fn identity(entries: &[Entry], profile: Profile) -> Sha256Digest {
    let mut h = Sha256::new();
    h.update(b"dds-certsync truststore v1\0");
    h.update(profile.as_str().as_bytes());
    h.update([0]);
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort();
    for e in sorted {
        h.update((e.alias.len() as u64).to_be_bytes());
        h.update(e.alias.as_bytes());
        h.update((e.der.len() as u64).to_be_bytes());
        h.update(&e.der);
    }
    h.finalize().into()
}

/// Encodes the entries as a PKCS#12 store of trusted certificates.
pub fn encode(
    entries: &[Entry],
    password: &Secret,
    profile: Profile,
) -> Result<Vec<u8>, StoreError> {
    let mut store = KeyStore::new();
    for e in entries {
        let cert =
            Certificate::from_der(&e.der).map_err(|e| StoreError::BadCertificate(e.to_string()))?;
        store.add_entry(&e.alias, KeyStoreEntry::Certificate(cert));
    }
    let (enc, mac) = match profile {
        Profile::Modern => (
            EncryptionAlgorithm::PbeWithHmacSha256AndAes256,
            MacAlgorithm::HmacSha256,
        ),
        Profile::Legacy => (
            EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc,
            MacAlgorithm::HmacSha1,
        ),
    };
    store
        .writer(password.expose())
        .encryption_algorithm(enc)
        .encryption_iterations(ITERATIONS)
        .mac_algorithm(mac)
        .mac_iterations(ITERATIONS)
        .write()
        .map_err(|e| StoreError::Encode(e.to_string()))
}

/// Reads a store: its entries if it is exactly what dds-certsync writes for
/// `profile` and opens with `password`; otherwise why not.
pub fn decode(bytes: &[u8], password: &Secret, profile: Profile) -> Result<Vec<Entry>, StoreError> {
    let found = params_of(bytes)?;
    if found != profile.expected_params() {
        return Err(StoreError::OtherFormat { found, profile });
    }
    let archive = p12_keystore::Pkcs12Archive::from_pkcs12(bytes, password.expose())
        .map_err(|e| StoreError::DoesNotOpen(e.to_string()))?;
    if !archive.keys.is_empty() {
        return Err(StoreError::ForeignContent("a private key"));
    }
    if !archive.secrets.is_empty() {
        return Err(StoreError::ForeignContent("a secret key"));
    }
    let mut entries = Vec::with_capacity(archive.certs.len());
    for bag in archive.certs {
        if !bag.trusted || bag.local_key_id.is_some() {
            return Err(StoreError::ForeignContent(
                "a certificate that is not a trusted-certificate entry",
            ));
        }
        let Some(alias) = bag.friendly_name else {
            return Err(StoreError::ForeignContent("an entry without an alias"));
        };
        entries.push(Entry {
            alias,
            der: bag.cert.as_der().to_vec(),
        });
    }
    entries.sort();
    if entries.windows(2).any(|w| w[0].alias == w[1].alias) {
        return Err(StoreError::ForeignContent("two entries with one alias"));
    }
    Ok(entries)
}

/// What a store on disk counts as for the comparison: its [`identity`] when
/// it [`decode`]s, else the SHA-256 of its bytes (never equal to an
/// identity, so the store is rewritten).
pub fn identity_on_disk(bytes: &[u8], password: &Secret, profile: Profile) -> Sha256Digest {
    read(bytes, password, profile).digest
}

/// A file at a truststore's path, read once (one key derivation for all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// [`identity_on_disk`].
    pub digest: Sha256Digest,
    /// Its entries, or why it is not a store of ours.
    pub entries: Result<Vec<Entry>, StoreError>,
}

/// Reads a file at a truststore's path: see [`Read`].
pub fn read(bytes: &[u8], password: &Secret, profile: Profile) -> Read {
    let entries = decode(bytes, password, profile);
    let digest = match &entries {
        Ok(e) => identity(e, profile),
        Err(_) => sha256(bytes),
    };
    Read { digest, entries }
}

/// The identity a store of the certificates in `pem` has: what a file
/// written by [`render`] will count as.
pub fn expected(pem: &[u8], profile: Profile) -> Result<Sha256Digest, StoreError> {
    Ok(identity(&entries_from_pem(pem)?, profile))
}

/// The bytes of a store of the certificates in `pem`.
pub fn render(pem: &[u8], password: &Secret, profile: Profile) -> Result<Vec<u8>, StoreError> {
    encode(&entries_from_pem(pem)?, password, profile)
}

// The parts of a PFX (RFC 7292) that carry its format parameters.

#[derive(Sequence)]
struct Pfx<'a> {
    version: u8,
    auth_safe: ContentInfo<'a>,
    mac_data: Option<MacData<'a>>,
}

#[derive(Sequence)]
struct ContentInfo<'a> {
    content_type: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    content: AnyRef<'a>,
}

#[derive(Sequence)]
struct MacData<'a> {
    mac: DigestInfo<'a>,
    mac_salt: &'a OctetStringRef,
    #[asn1(default = "one")]
    iterations: u32,
}

fn one() -> u32 {
    1
}

#[derive(Sequence)]
struct DigestInfo<'a> {
    algorithm: AlgorithmIdentifier<'a>,
    digest: &'a OctetStringRef,
}

#[derive(Sequence)]
struct AlgorithmIdentifier<'a> {
    oid: ObjectIdentifier,
    parameters: Option<AnyRef<'a>>,
}

#[derive(Sequence)]
struct EncryptedData<'a> {
    version: u8,
    content: EncryptedContentInfo<'a>,
}

#[derive(Sequence)]
struct EncryptedContentInfo<'a> {
    content_type: ObjectIdentifier,
    algorithm: AlgorithmIdentifier<'a>,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    encrypted: Option<&'a OctetStringRef>,
}

#[derive(Sequence)]
struct Pbes2Params<'a> {
    kdf: AlgorithmIdentifier<'a>,
    cipher: AlgorithmIdentifier<'a>,
}

#[derive(Sequence)]
struct Pbkdf2Params<'a> {
    salt: AnyRef<'a>,
    iterations: u32,
    key_length: Option<u32>,
    prf: Option<AlgorithmIdentifier<'a>>,
}

#[derive(Sequence)]
struct PbeParams<'a> {
    salt: &'a OctetStringRef,
    iterations: u32,
}

const DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ENCRYPTED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.6");
const PBES2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.5.13");
const PBKDF2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.5.12");
/// PBKDF2's default pseudo-random function.
const HMAC_SHA1: &str = "1.2.840.113549.2.7";

/// The format parameters of a PKCS#12 file, as one line: the MAC's digest
/// and iterations, and per safe its encryption (scheme, key derivation,
/// iterations, cipher). No salt, no IV, no key derivation run.
fn params_of(bytes: &[u8]) -> Result<String, StoreError> {
    let bad = |e: der::Error| StoreError::NotPkcs12(e.to_string());
    let pfx = Pfx::from_der(bytes).map_err(bad)?;
    if pfx.version != 3 || pfx.auth_safe.content_type != DATA {
        return Err(StoreError::NotPkcs12("not a version 3 PFX of data".into()));
    }
    let mac = match &pfx.mac_data {
        Some(m) => format!("{}/{}", m.mac.algorithm.oid, m.iterations),
        None => "none".to_string(),
    };
    let octets: &OctetStringRef = pfx.auth_safe.content.decode_as().map_err(bad)?;
    let safes: Vec<ContentInfo<'_>> = Vec::from_der(octets.as_bytes()).map_err(bad)?;
    let mut described = Vec::with_capacity(safes.len());
    for safe in &safes {
        described.push(match safe.content_type {
            DATA => "data".to_string(),
            ENCRYPTED_DATA => {
                let enc: EncryptedData<'_> = safe.content.decode_as().map_err(bad)?;
                format!(
                    "encrypted:{}",
                    scheme_of(&enc.content.algorithm).map_err(bad)?
                )
            }
            other => format!("content:{other}"),
        });
    }
    Ok(format!("mac={mac}; safes=[{}]", described.join(", ")))
}

/// An encryption scheme without its salt and IV.
fn scheme_of(alg: &AlgorithmIdentifier<'_>) -> der::Result<String> {
    let Some(params) = &alg.parameters else {
        return Ok(alg.oid.to_string());
    };
    if alg.oid == PBES2 {
        let p: Pbes2Params<'_> = params.decode_as()?;
        let kdf = if p.kdf.oid == PBKDF2 {
            let k: Pbkdf2Params<'_> = p
                .kdf
                .parameters
                .ok_or_else(|| {
                    der::Error::from(der::ErrorKind::Length {
                        tag: der::Tag::Sequence,
                    })
                })?
                .decode_as()?;
            let prf = k
                .prf
                .map(|a| a.oid.to_string())
                .unwrap_or_else(|| HMAC_SHA1.to_string());
            let len = k
                .key_length
                .map(|l| format!("/len={l}"))
                .unwrap_or_default();
            format!("pbkdf2/{}{len}/prf={prf}", k.iterations)
        } else {
            p.kdf.oid.to_string()
        };
        return Ok(format!("pbes2({kdf}; cipher={})", p.cipher.oid));
    }
    match params.decode_as::<PbeParams<'_>>() {
        Ok(p) => Ok(format!("{}/{}", alg.oid, p.iterations)),
        Err(_) => Ok(alg.oid.to_string()),
    }
}

#[cfg(test)]
mod tests;
