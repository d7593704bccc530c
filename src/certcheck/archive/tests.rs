//! The archive bounds at their edges, and every hostile form the stand-in
//! serves, through `verify` as a download meets it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dds_standin::{HostileZip, ZipMember, certificate_zip, pem_to_der, zip_of};

use super::*;
use crate::certcheck::{MAX_BODY, VerifyError, verify};

const CERT_A: &str = include_str!("../../../tests/data/cert-a.pem");
const CERT_SM2: &str = include_str!("../../../tests/data/cert-sm2.pem");
const CERT_EXPIRED: &str = include_str!("../../../tests/data/cert-expired.pem");
const KEY: &str = include_str!("../../../tests/data/key.pem");

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_000_000) // 2026-11-18
}

fn archive_error(body: &[u8]) -> ArchiveError {
    match verify(body, now()) {
        Err(VerifyError::Archive(e)) => e,
        other => panic!("expected an archive error, got {other:?}"),
    }
}

fn member_problem(body: &[u8], member: &str) -> MemberProblem {
    match archive_error(body) {
        ArchiveError::Member { name, problem } if name == member => problem,
        other => panic!("expected a problem of {member:?}, got {other:?}"),
    }
}

/// `CERT_A`, then lines of `a` and `b` (mostly `a`, at random) up to exactly
/// `len` bytes: a certificate member that deflates about tenfold, far from
/// [`MAX_RATIO`].
fn padded_cert(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = CERT_A.as_bytes().to_vec();
    while out.len() < len {
        out.push(match (out.len() % 64, rng.u8(..10)) {
            (0, _) => b'\n',
            (_, 0) => b'b',
            _ => b'a',
        });
    }
    out.truncate(len);
    out
}

#[test]
fn a_certificate_zip_der_and_pem_write_the_same_file() {
    let pem = verify(CERT_A.as_bytes(), now()).unwrap();
    let der = pem_to_der(CERT_A.as_bytes()).unwrap();
    let forms = [
        ("pem zip", certificate_zip(CERT_A.as_bytes())),
        ("der", der.clone()),
        (
            "der zip",
            zip_of(&[ZipMember::stored("ca.cer", der.clone())]),
        ),
        (
            "der zip, .CRT",
            zip_of(&[ZipMember::deflated("certs/CA.CRT", der)]),
        ),
    ];
    for (what, body) in forms {
        let v = verify(&body, now()).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(v, pem, "{what}");
    }
}

#[test]
fn a_zip_written_by_the_zip_crate_is_read() {
    use std::io::Write as _;
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let deflate =
        zip::write::SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    w.add_directory("Certificate_Download/", deflate).unwrap();
    for name in [
        "Certificate_Download/ca.pem",
        "Certificate_Download/ca-bundle.pem",
    ] {
        w.start_file(name, deflate).unwrap();
        w.write_all(CERT_A.as_bytes()).unwrap();
    }
    let body = w.finish().unwrap().into_inner();
    let v = verify(&body, now()).unwrap();
    assert_eq!(v.pem, CERT_A.as_bytes());
}

#[test]
fn members_are_deduplicated_in_order_and_other_names_ignored() {
    let body = zip_of(&[
        ZipMember::deflated("readme.txt", "-----BEGIN PRIVATE KEY-----\n"),
        ZipMember::deflated("ca.key", KEY),
        ZipMember::stored("certs/", ""),
        ZipMember::deflated("b.PEM", CERT_SM2),
        ZipMember::deflated("a.crt", format!("{CERT_A}{CERT_SM2}")),
        ZipMember::deflated("inner.zip", certificate_zip(KEY.as_bytes())),
    ]);
    let v = verify(&body, now()).unwrap();
    assert_eq!(v.pem, format!("{CERT_SM2}{CERT_A}").as_bytes());
    assert_eq!(v.certs.len(), 2);
}

#[test]
fn a_member_that_is_not_a_certificate_refuses_the_download_by_name() {
    let body = zip_of(&[
        ZipMember::deflated("ca.pem", CERT_A),
        ZipMember::deflated("server.pem", KEY),
    ]);
    let e = verify(&body, now()).unwrap_err();
    assert!(
        matches!(&e, VerifyError::InMember { member, error }
            if member == "server.pem" && matches!(**error, VerifyError::ForbiddenBlock(_))),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "zip member \"server.pem\": refused PEM block \"PRIVATE KEY\": only CERTIFICATE blocks are accepted"
    );
    // An empty member, or one of text, is no certificate either.
    for junk in ["", "just text\n"] {
        let body = zip_of(&[ZipMember::deflated("ca.pem", junk)]);
        assert!(
            matches!(verify(&body, now()), Err(VerifyError::InMember { .. })),
            "{junk:?}"
        );
    }
}

#[test]
fn the_rules_apply_to_members_and_name_them() {
    let body = zip_of(&[
        ZipMember::deflated("ca.pem", CERT_A),
        ZipMember::deflated("old.pem", format!("{CERT_SM2}{CERT_EXPIRED}")),
    ]);
    let e = verify(&body, now()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("zip member \"old.pem\": certificate #2 (")
            && e.to_string().contains("expired at"),
        "{e}"
    );
}

#[test]
fn no_certificate_member_and_no_member_are_errors() {
    let none = HostileZip::NoCertificate.build(CERT_A.as_bytes());
    assert_eq!(archive_error(&none), ArchiveError::NoCertificateMember(2));
    let empty = HostileZip::Empty.build(CERT_A.as_bytes());
    assert_eq!(archive_error(&empty), ArchiveError::Empty);
    assert_eq!(
        archive_error(&zip_of(&[ZipMember::stored("certs/", "")])),
        ArchiveError::NoCertificateMember(1),
        "a directory named like a folder of certificates is no certificate"
    );
}

#[test]
fn unsafe_names_refuse_the_archive_whatever_the_member() {
    for (name, why) in [
        ("../ca.pem", "a `..` component"),
        ("certs/../../ca.pem", "a `..` component"),
        ("..\\ca.pem", "a `..` component"),
        ("../notes.txt", "a `..` component"),
        ("/etc/ca.pem", "absolute"),
        ("\\ca.pem", "absolute"),
        ("C:ca.pem", "a drive letter"),
        ("ca\0.pem", "a NUL byte"),
        ("", "empty"),
    ] {
        let body = zip_of(&[
            ZipMember::deflated("ca.pem", CERT_A),
            ZipMember::deflated(name, CERT_A),
        ]);
        let shown = shown_name(name.as_bytes());
        assert_eq!(
            member_problem(&body, &shown),
            MemberProblem::UnsafeName(why),
            "{name:?}"
        );
    }
    // Dots inside a name are no traversal.
    assert_eq!(unsafe_name(b"certs/..ca..pem"), None);
    assert_eq!(unsafe_name(b"./ca.pem"), None);
    for kind in [HostileZip::Traversal, HostileZip::Absolute] {
        assert!(matches!(
            archive_error(&kind.build(CERT_A.as_bytes())),
            ArchiveError::Member {
                problem: MemberProblem::UnsafeName(_),
                ..
            }
        ));
    }
}

#[test]
fn names_are_shown_escaped_and_capped() {
    assert_eq!(shown_name(b"ca.pem"), "ca.pem");
    assert_eq!(
        shown_name(b"\x1b[31mred\n\".pem"),
        "\\u{1b}[31mred\\n\\\".pem"
    );
    assert_eq!(shown_name(b"\xff.pem"), "\u{fffd}.pem");
    let at_cap = "a".repeat(NAME_SHOWN);
    assert_eq!(shown_name(at_cap.as_bytes()), at_cap);
    let over = "a".repeat(NAME_SHOWN + 1);
    assert_eq!(shown_name(over.as_bytes()), format!("{at_cap}…"));
    // A hostile name reaches the message in that form.
    let name = format!("\x1b]0;{}.pem", "x".repeat(300));
    let body = zip_of(&[ZipMember::deflated(name.as_bytes(), KEY)]);
    let text = verify(&body, now()).unwrap_err().to_string();
    assert!(!text.contains('\x1b'), "{text}");
    assert!(text.len() < 300, "{text}");
}

#[test]
fn certificate_names_end_in_pem_crt_or_cer_in_any_case() {
    for yes in ["ca.pem", "CA.PEM", "a/b.Crt", "x.cer"] {
        assert!(is_certificate_name(yes.as_bytes()), "{yes}");
    }
    for no in [
        "ca.pem.txt",
        "ca.key",
        "ca",
        "pem",
        "ca.der",
        "ca.p7b",
        "ca.zip",
    ] {
        assert!(!is_certificate_name(no.as_bytes()), "{no}");
    }
}

#[test]
fn encrypted_symlinked_and_other_methods_are_refused() {
    let pem = CERT_A.as_bytes();
    assert_eq!(
        member_problem(&HostileZip::Encrypted.build(pem), "ca.pem"),
        MemberProblem::Encrypted
    );
    assert_eq!(
        member_problem(&HostileZip::Symlink.build(pem), "latest.pem"),
        MemberProblem::Symlink
    );
    assert!(matches!(
        member_problem(&HostileZip::Bzip2.build(pem), "ca.pem"),
        MemberProblem::Method(m) if m.contains("zip2") || m.contains("12")
    ));
    // A symbolic link or an encrypted member of another name is not read.
    let other = zip_of(&[
        ZipMember::deflated("ca.pem", CERT_A),
        ZipMember {
            symlink: true,
            ..ZipMember::stored("latest", "ca.pem")
        },
        ZipMember {
            encrypted: true,
            ..ZipMember::stored("secret.bin", "x")
        },
    ]);
    assert!(verify(&other, now()).is_ok());
}

#[test]
fn a_name_used_twice_is_refused() {
    assert_eq!(
        archive_error(&HostileZip::Duplicate.build(CERT_A.as_bytes())),
        ArchiveError::DuplicateNames {
            entries: 2,
            names: 1
        }
    );
}

#[test]
fn compressed_size_at_the_edge() {
    // The archive is a download: at most MAX_BODY bytes, whatever it holds.
    let sized = |len: usize| {
        let with_pad = |pad: usize| {
            zip_of(&[
                ZipMember::deflated("ca.pem", CERT_A),
                ZipMember::stored("padding.bin", vec![b'x'; pad]),
            ])
        };
        let overhead = with_pad(0).len();
        let body = with_pad(len - overhead);
        assert_eq!(body.len(), len);
        body
    };
    assert_eq!(
        verify(&sized(MAX_BODY), now()).unwrap().pem,
        CERT_A.as_bytes()
    );
    assert_eq!(
        verify(&sized(MAX_BODY + 1), now()),
        Err(VerifyError::TooLarge)
    );
}

#[test]
fn member_count_at_the_edge() {
    let members = |n: u64| {
        let mut m = vec![ZipMember::deflated("ca.pem", CERT_A)];
        m.extend((1..n).map(|i| ZipMember::stored(format!("{i}.txt"), "")));
        zip_of(&m)
    };
    assert!(verify(&members(MAX_MEMBERS), now()).is_ok());
    assert_eq!(
        archive_error(&members(MAX_MEMBERS + 1)),
        ArchiveError::TooManyMembers(MAX_MEMBERS + 1)
    );
    assert_eq!(
        archive_error(&HostileZip::TooMany.build(CERT_A.as_bytes())),
        ArchiveError::TooManyMembers(65)
    );
}

#[test]
fn member_size_at_the_edge() {
    let at = zip_of(&[ZipMember::deflated(
        "ca.pem",
        padded_cert(MAX_MEMBER_SIZE as usize, 1),
    )]);
    assert!(at.len() < MAX_BODY / 4, "{}", at.len());
    assert_eq!(verify(&at, now()).unwrap().pem, CERT_A.as_bytes());
    let over = zip_of(&[ZipMember::deflated(
        "ca.pem",
        padded_cert(MAX_MEMBER_SIZE as usize + 1, 1),
    )]);
    assert_eq!(member_problem(&over, "ca.pem"), MemberProblem::TooLarge);
}

#[test]
fn total_size_at_the_edge() {
    let quarter = MAX_TOTAL_SIZE as usize / 4;
    let mut members: Vec<ZipMember> = (0..4)
        .map(|i| ZipMember::deflated(format!("{i}.pem"), padded_cert(quarter, i)))
        .collect();
    let at = zip_of(&members);
    assert!(at.len() < MAX_BODY, "{}", at.len());
    assert_eq!(verify(&at, now()).unwrap().pem, CERT_A.as_bytes());
    // One byte more, in a member that would be refused if it were read.
    members.push(ZipMember::stored("4.pem", "x"));
    assert_eq!(
        archive_error(&zip_of(&members)),
        ArchiveError::TotalTooLarge
    );
}

#[test]
fn ratio_at_the_edge() {
    assert!(!exceeds_ratio(MAX_RATIO * 1000, 1000));
    assert!(exceeds_ratio(MAX_RATIO * 1000 + 1, 1000));
    // A zero compressed size counts as one byte.
    assert!(!exceeds_ratio(MAX_RATIO, 0));
    assert!(exceeds_ratio(MAX_RATIO + 1, 0));
    assert!(!exceeds_ratio(u64::MAX, u64::MAX));
}

#[test]
fn a_bomb_is_refused_after_reading_at_most_the_cap() {
    // 16 MiB of zeros in 16 KiB: reading stops at the cap. The ratio of
    // what came out by then to the member's compressed size is only 64,
    // so it is the size cap that refuses it.
    let body = HostileZip::Bomb.build(CERT_A.as_bytes());
    assert!(body.len() < 64 * 1024, "{}", body.len());
    assert_eq!(member_problem(&body, "bundle.pem"), MemberProblem::TooLarge);
    // Under the size cap, a high ratio alone refuses.
    let small = zip_of(&[ZipMember::deflated(
        "ca.pem",
        format!("{CERT_A}{}", "\n".repeat(300_000)),
    )]);
    assert!(matches!(
        member_problem(&small, "ca.pem"),
        MemberProblem::Bomb { .. }
    ));
}

#[test]
fn nested_archives_are_not_opened() {
    let body = HostileZip::Nested.build(CERT_A.as_bytes());
    assert_eq!(member_problem(&body, "ca.pem"), MemberProblem::Nested);
}

#[test]
fn header_sizes_are_not_trusted() {
    // Says 10 bytes, inflates to more than the cap.
    let lying = zip_of(&[ZipMember {
        declared_size: Some(10),
        ..ZipMember::deflated("ca.pem", padded_cert(MAX_MEMBER_SIZE as usize + 1, 2))
    }]);
    assert!(matches!(
        member_problem(&lying, "ca.pem"),
        MemberProblem::TooLarge | MemberProblem::Unreadable(_)
    ));
    // Says 4 GiB, holds a certificate: what comes out is what counts.
    let big = zip_of(&[ZipMember {
        declared_size: Some(u32::MAX),
        ..ZipMember::deflated("ca.pem", CERT_A)
    }]);
    match verify(&big, now()) {
        Ok(v) => assert_eq!(v.pem, CERT_A.as_bytes()),
        Err(e) => assert!(
            matches!(
                &e,
                VerifyError::Archive(ArchiveError::Member {
                    problem: MemberProblem::Unreadable(_),
                    ..
                })
            ),
            "{e:?}"
        ),
    }
}

#[test]
fn a_corrupt_crc_is_refused() {
    let body = HostileZip::BadCrc.build(CERT_A.as_bytes());
    assert!(matches!(
        member_problem(&body, "ca.pem"),
        MemberProblem::Unreadable(why) if why.to_lowercase().contains("checksum")
    ));
}

#[test]
fn every_truncation_is_refused_without_panic() {
    let whole = certificate_zip(CERT_A.as_bytes());
    assert!(verify(&whole, now()).is_ok());
    for cut in 0..whole.len() {
        assert!(verify(&whole[..cut], now()).is_err(), "cut at {cut}");
    }
    assert_eq!(
        archive_error(&HostileZip::Truncated.build(CERT_A.as_bytes())),
        ArchiveError::NoEnd
    );
}

#[test]
fn every_single_byte_flip_is_handled_without_panic() {
    let whole = certificate_zip(CERT_A.as_bytes());
    let mut accepted = 0;
    for at in 0..whole.len() {
        let mut body = whole.clone();
        body[at] ^= 0x55;
        if let Ok(v) = verify(&body, now()) {
            // Only bytes that change no content (dates, attributes) pass.
            assert_eq!(v.pem, CERT_A.as_bytes(), "flip at {at}");
            accepted += 1;
        }
    }
    assert!(accepted < whole.len() / 4, "{accepted}");
}

#[test]
fn the_end_record_is_found_after_a_comment_only_if_it_fits() {
    let mut body = certificate_zip(CERT_A.as_bytes());
    assert_eq!(end_record_entries(&body), Ok(2));
    let n = body.len();
    body[n - 2..].copy_from_slice(&4u16.to_le_bytes());
    body.extend_from_slice(b"note");
    assert_eq!(end_record_entries(&body), Ok(2));
    body.push(b'!');
    assert_eq!(end_record_entries(&body), Err(ArchiveError::NoEnd));
    assert_eq!(end_record_entries(b"PK\x05\x06"), Err(ArchiveError::NoEnd));
}

#[test]
fn zips_and_der_are_told_apart_from_pem_by_content() {
    assert!(is_zip(b"PK\x03\x04rest"));
    assert!(is_zip(b"PK\x05\x06rest"));
    assert!(!is_zip(b"PK"));
    assert!(!is_zip(CERT_A.as_bytes()));
    let der = pem_to_der(CERT_A.as_bytes()).unwrap();
    assert!(crate::certcheck::is_der(&der));
    assert!(!crate::certcheck::is_der(CERT_A.as_bytes()));
    assert!(!crate::certcheck::is_der(b"0123 not der"));
    assert!(crate::certcheck::is_der(&[0x30, 0x02, 0x05, 0x00]));
    // DER with something after it is refused, not read as PEM.
    let mut trailing = der.clone();
    trailing.extend_from_slice(b"\n");
    assert!(matches!(
        verify(&trailing, now()),
        Err(VerifyError::BadCertificate { index: 1, reason }) if reason.contains("trailing")
    ));
}
