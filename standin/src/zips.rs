//! Zip archives the download host can serve: a certificate zipped the way
//! some Huawei Cloud services publish it (`Certificate_Download.zip` with
//! `ca.pem` and `ca-bundle.pem`), and hostile archives.
//!
//! The archives are written by hand ([`zip_of`]), not by a zip library: a
//! library refuses to write most of what a hostile archive is (a name twice,
//! a wrong CRC, a lying size, an encryption flag without encryption), and
//! the daemon's reader is then checked against bytes it did not write itself.
//! Members are stored or raw deflate (`miniz_oxide`); every archive has one
//! central directory and an end record, names flagged UTF-8, dated 1980-01-01.

use crate::certs::pem_to_der;

/// How the download host serves a slot's certificate (set per slot with
/// `StandIn::set_form`; rotation keeps it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Form {
    /// The PEM itself.
    #[default]
    Pem,
    /// The first certificate, DER.
    Der,
    /// [`certificate_zip`]: `ca.pem` and `ca-bundle.pem`.
    Zip,
    /// [`der_zip`]: `ca.cer` (DER) and `readme.txt`.
    DerZip,
}

impl Form {
    /// Every form.
    pub const ALL: [Form; 4] = [Form::Pem, Form::Der, Form::Zip, Form::DerZip];

    /// The form's name in the admin API (`form=...`).
    pub fn name(self) -> &'static str {
        match self {
            Form::Pem => "pem",
            Form::Der => "der",
            Form::Zip => "zip",
            Form::DerZip => "der-zip",
        }
    }

    /// The form of a name from [`Form::name`].
    pub fn from_name(name: &str) -> Option<Form> {
        Form::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The body served for a slot holding `pem`.
    pub fn render(self, pem: &[u8]) -> Vec<u8> {
        match self {
            Form::Pem => pem.to_vec(),
            Form::Der => pem_to_der(pem).unwrap_or_default(),
            Form::Zip => certificate_zip(pem),
            Form::DerZip => der_zip(pem),
        }
    }
}

/// One member of an archive [`zip_of`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipMember {
    /// The name, as stored (any bytes).
    pub name: Vec<u8>,
    /// The content, before compression.
    pub data: Vec<u8>,
    /// Deflate (method 8) rather than stored (method 0).
    pub deflate: bool,
    /// The compression method written in the headers, if not the real one.
    pub method: Option<u16>,
    /// Sets the encryption flag (the content is not encrypted).
    pub encrypted: bool,
    /// Marks the entry as a Unix symbolic link (its content is the target).
    pub symlink: bool,
    /// Writes a CRC that does not match the content.
    pub bad_crc: bool,
    /// The uncompressed size written in the headers, if not the real one.
    pub declared_size: Option<u32>,
}

impl ZipMember {
    /// A deflated member.
    pub fn deflated(name: impl Into<Vec<u8>>, data: impl Into<Vec<u8>>) -> ZipMember {
        ZipMember {
            deflate: true,
            ..ZipMember::stored(name, data)
        }
    }

    /// A stored (uncompressed) member.
    pub fn stored(name: impl Into<Vec<u8>>, data: impl Into<Vec<u8>>) -> ZipMember {
        ZipMember {
            name: name.into(),
            data: data.into(),
            deflate: false,
            method: None,
            encrypted: false,
            symlink: false,
            bad_crc: false,
            declared_size: None,
        }
    }
}

/// A hostile or broken archive, built around a slot's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostileZip {
    /// `ca.pem` beside `../../etc/ca.pem`.
    Traversal,
    /// `ca.pem` beside `/etc/ca.pem`.
    Absolute,
    /// `ca.pem`, then `bundle.pem`: 16 MiB of zeros deflated to 16 KiB.
    Bomb,
    /// `ca.pem` with the encryption flag set.
    Encrypted,
    /// Only `readme.txt` and `ca.key`.
    NoCertificate,
    /// `ca.pem` and `server.pem`, which holds a private key.
    KeyInside,
    /// `ca.pem` twice.
    Duplicate,
    /// `ca.pem` and `latest.pem`, a symbolic link to it.
    Symlink,
    /// `ca.pem`, itself the certificate zip.
    Nested,
    /// The certificate zip cut in half.
    Truncated,
    /// `ca.pem` with a wrong CRC.
    BadCrc,
    /// `ca.pem` said to be bzip2-compressed.
    Bzip2,
    /// `ca.pem` and 64 more entries.
    TooMany,
    /// An archive with no entries: only the end record.
    Empty,
}

impl HostileZip {
    /// Every kind, for tests that go through them all.
    pub const ALL: [HostileZip; 14] = [
        HostileZip::Traversal,
        HostileZip::Absolute,
        HostileZip::Bomb,
        HostileZip::Encrypted,
        HostileZip::NoCertificate,
        HostileZip::KeyInside,
        HostileZip::Duplicate,
        HostileZip::Symlink,
        HostileZip::Nested,
        HostileZip::Truncated,
        HostileZip::BadCrc,
        HostileZip::Bzip2,
        HostileZip::TooMany,
        HostileZip::Empty,
    ];

    /// The kind's name in the admin API (`zip=...`).
    pub fn name(self) -> &'static str {
        match self {
            HostileZip::Traversal => "traversal",
            HostileZip::Absolute => "absolute",
            HostileZip::Bomb => "bomb",
            HostileZip::Encrypted => "encrypted",
            HostileZip::NoCertificate => "no-certificate",
            HostileZip::KeyInside => "key-inside",
            HostileZip::Duplicate => "duplicate",
            HostileZip::Symlink => "symlink",
            HostileZip::Nested => "nested",
            HostileZip::Truncated => "truncated",
            HostileZip::BadCrc => "bad-crc",
            HostileZip::Bzip2 => "bzip2",
            HostileZip::TooMany => "too-many",
            HostileZip::Empty => "empty",
        }
    }

    /// The kind of a name from [`HostileZip::name`].
    pub fn from_name(name: &str) -> Option<HostileZip> {
        HostileZip::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The archive, around `pem` (a slot's certificate).
    pub fn build(self, pem: &[u8]) -> Vec<u8> {
        let ca = || ZipMember::deflated("ca.pem", pem);
        let with = |more: ZipMember| zip_of(&[ca(), more]);
        match self {
            HostileZip::Traversal => with(ZipMember::deflated("../../etc/ca.pem", pem)),
            HostileZip::Absolute => with(ZipMember::deflated("/etc/ca.pem", pem)),
            HostileZip::Bomb => with(ZipMember::deflated("bundle.pem", vec![0u8; 16 << 20])),
            HostileZip::Encrypted => zip_of(&[ZipMember {
                encrypted: true,
                ..ca()
            }]),
            HostileZip::NoCertificate => zip_of(&[
                ZipMember::deflated("readme.txt", "Certificates of the instance.\n"),
                ZipMember::deflated("ca.key", crate::certs::private_key_pem()),
            ]),
            HostileZip::KeyInside => with(ZipMember::deflated(
                "server.pem",
                crate::certs::private_key_pem(),
            )),
            HostileZip::Duplicate => with(ca()),
            HostileZip::Symlink => with(ZipMember {
                symlink: true,
                ..ZipMember::stored("latest.pem", "ca.pem")
            }),
            HostileZip::Nested => zip_of(&[ZipMember::stored("ca.pem", certificate_zip(pem))]),
            HostileZip::Truncated => {
                let whole = certificate_zip(pem);
                whole[..whole.len() / 2].to_vec()
            }
            HostileZip::BadCrc => zip_of(&[ZipMember {
                bad_crc: true,
                ..ca()
            }]),
            HostileZip::Bzip2 => zip_of(&[ZipMember {
                method: Some(12),
                ..ca()
            }]),
            HostileZip::TooMany => {
                let mut members = vec![ca()];
                members.extend((0..64).map(|i| ZipMember::stored(format!("notes/{i}.txt"), "")));
                zip_of(&members)
            }
            HostileZip::Empty => zip_of(&[]),
        }
    }
}

/// `Certificate_Download.zip` as some services publish it: `ca.pem` and
/// `ca-bundle.pem`, both the PEM given, deflated.
pub fn certificate_zip(pem: &[u8]) -> Vec<u8> {
    zip_of(&[
        ZipMember::deflated("ca.pem", pem),
        ZipMember::deflated("ca-bundle.pem", pem),
    ])
}

/// A zip of DER members: `ca.cer` holding the first certificate of `pem` as
/// DER, beside a `readme.txt`.
pub fn der_zip(pem: &[u8]) -> Vec<u8> {
    zip_of(&[
        ZipMember::stored("readme.txt", "CA certificate, DER.\n"),
        ZipMember::deflated("ca.cer", pem_to_der(pem).unwrap_or_default()),
    ])
}

/// Writes an archive of these members, in this order.
pub fn zip_of(members: &[ZipMember]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for m in members {
        let offset = out.len() as u32;
        let packed = if m.deflate {
            miniz_oxide::deflate::compress_to_vec(&m.data, 6)
        } else {
            m.data.clone()
        };
        let crc = crc32fast::hash(&m.data) ^ if m.bad_crc { 0x5a5a_5a5a } else { 0 };
        let method = m.method.unwrap_or(if m.deflate { 8 } else { 0 });
        let flags: u16 = 0x0800 | u16::from(m.encrypted);
        let size = m.declared_size.unwrap_or(m.data.len() as u32);
        let common = |buf: &mut Vec<u8>| {
            put16(buf, 20); // version needed: 2.0
            put16(buf, flags);
            put16(buf, method);
            put16(buf, 0); // time 00:00
            put16(buf, 0x21); // date 1980-01-01
            put32(buf, crc);
            put32(buf, packed.len() as u32);
            put32(buf, size);
            put16(buf, m.name.len() as u16);
            put16(buf, 0); // extra length
        };
        out.extend_from_slice(b"PK\x03\x04");
        common(&mut out);
        out.extend_from_slice(&m.name);
        out.extend_from_slice(&packed);

        central.extend_from_slice(b"PK\x01\x02");
        put16(&mut central, (3 << 8) | 20); // made by: Unix, 2.0
        common(&mut central);
        put16(&mut central, 0); // comment length
        put16(&mut central, 0); // disk
        put16(&mut central, 0); // internal attributes
        let mode: u32 = if m.symlink { 0o120_777 } else { 0o100_644 };
        put32(&mut central, mode << 16);
        put32(&mut central, offset);
        central.extend_from_slice(&m.name);
    }
    let central_at = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06");
    put16(&mut out, 0); // this disk
    put16(&mut out, 0); // the central directory's disk
    put16(&mut out, members.len() as u16);
    put16(&mut out, members.len() as u16);
    put32(&mut out, central.len() as u32);
    put32(&mut out, central_at);
    put16(&mut out, 0); // comment length
    out
}

fn put16(buf: &mut Vec<u8>, v: u16) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_archive_is_only_the_end_record() {
        let z = zip_of(&[]);
        assert_eq!(z.len(), 22);
        assert!(z.starts_with(b"PK\x05\x06"));
    }

    #[test]
    fn members_are_laid_out_with_matching_headers() {
        let z = zip_of(&[ZipMember::stored("a.pem", "hello")]);
        assert!(z.starts_with(b"PK\x03\x04"));
        // Local header (30 + 5 name) + 5 data, then the central header.
        assert_eq!(&z[40..44], b"PK\x01\x02");
        assert_eq!(&z[30..35], b"a.pem");
        assert_eq!(&z[35..40], b"hello");
        assert_eq!(
            u32::from_le_bytes(z[14..18].try_into().unwrap()),
            crc32fast::hash(b"hello")
        );
    }

    #[test]
    fn deflated_members_inflate_back() {
        let data = b"certificate ".repeat(100);
        let z = zip_of(&[ZipMember::deflated("a.pem", data.clone())]);
        let packed_len = u32::from_le_bytes(z[18..22].try_into().unwrap()) as usize;
        let packed = &z[35..35 + packed_len];
        assert_eq!(
            miniz_oxide::inflate::decompress_to_vec(packed).unwrap(),
            data
        );
    }

    #[test]
    fn every_hostile_kind_has_a_name_and_builds() {
        let pem = crate::certs::expired_cert_pem();
        for kind in HostileZip::ALL {
            assert_eq!(HostileZip::from_name(kind.name()), Some(kind));
            assert!(!kind.build(pem.as_bytes()).is_empty(), "{kind:?}");
        }
        assert_eq!(HostileZip::from_name("nope"), None);
    }

    #[test]
    fn every_form_has_a_name_and_renders() {
        let pem = crate::certs::expired_cert_pem();
        for form in Form::ALL {
            assert_eq!(Form::from_name(form.name()), Some(form));
            assert!(!form.render(pem.as_bytes()).is_empty(), "{form:?}");
        }
        assert_eq!(Form::Pem.render(pem.as_bytes()), pem.as_bytes());
        assert_eq!(Form::Der.render(pem.as_bytes())[0], 0x30);
    }
}
