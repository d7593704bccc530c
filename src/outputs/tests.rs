//! Unit tests of the outputs model: the judges without I/O, the two ways to
//! look at a file (counting reads), and the table.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::table::RoundEnd;
use super::*;
use crate::certcheck::sha256;
use crate::config::{Config, Perms, SecretSource, Truststore};
use std::sync::Arc;

const CERT_A: &str = include_str!("../../tests/data/cert-a.pem");
const KEY: &str = include_str!("../../tests/data/key.pem");
const DAY: i64 = 86400;

fn stamp(n: u64) -> Stamp {
    Stamp {
        dev: 1,
        ino: n,
        size: 1,
        mtime: (0, 0),
        ctime: (0, 0),
    }
}

fn owner() -> Owner {
    Owner {
        mode: 0o644,
        uid: 0,
        gid: 0,
    }
}

fn file(bytes: &[u8], content: Content) -> Observation {
    Observation::File(FileSeen {
        sha256: sha256(bytes),
        content,
        owner: owner(),
        stamp: stamp(1),
    })
}

fn certs(not_after: i64) -> Observation {
    file(b"certs", Content::Certs { not_after })
}

fn row(p: &str) -> Row {
    Row {
        instance_id: "i".into(),
        service: crate::cloud::Service::Dds,
        category: Category::International,
        path: PathBuf::from(p),
        format: Format::PemBundle,
        perms: Perms::default(),
        verified: None,
        owner: None,
        seen: None,
    }
}

fn config(text: &str) -> Config {
    let text = format!(
        "[cloud]\nregion = \"cn-north-4\"\nproject_id = \"p\"\n[auth]\nmethod = \"token\"\ntoken = \"t\"\n{text}"
    );
    crate::config::validate(crate::config::parse(&text).unwrap(), Path::new("/")).unwrap()
}

/// Instances `a` (`/o/a.crt`) and `b` (`/o/b.crt`).
fn two() -> Config {
    config(
        "[[instances]]\nid = \"a\"\ninternational = \"/o/a.crt\"\n[[instances]]\nid = \"b\"\ninternational = \"/o/b.crt\"\n",
    )
}

fn verified(bytes: &[u8]) -> LastVerified {
    LastVerified {
        bytes: bytes.into(),
        sha256: sha256(bytes),
        current_not_after: None,
        format: Format::PemBundle,
    }
}

fn end(path: &str, bytes: &[u8]) -> RoundEnd {
    RoundEnd {
        path: PathBuf::from(path),
        verified: Some(verified(bytes)),
        seen: Some(file(bytes, Content::Invalid)),
    }
}

// --- the judges ---

#[test]
fn drifts() {
    let h = sha256(b"x");
    assert_eq!(drift(&file(b"x", Content::Invalid), &h), Drift::Intact);
    assert_eq!(drift(&file(b"y", Content::Invalid), &h), Drift::Modified);
    let big = Observation::Oversized {
        owner: owner(),
        stamp: stamp(1),
    };
    assert_eq!(drift(&big, &h), Drift::Modified);
    assert_eq!(drift(&Observation::Missing, &h), Drift::Deleted);
    assert_eq!(drift(&Observation::Link, &h), Drift::Link);
    assert_eq!(
        drift(&Observation::Unreadable("denied".into()), &h),
        Drift::Unreadable
    );
}

#[test]
fn what_the_planner_and_the_ledger_compare() {
    assert_eq!(
        file(b"x", Content::Invalid).digest(),
        Ok(Some(sha256(b"x")))
    );
    assert_eq!(Observation::Missing.digest(), Ok(None));
    assert_eq!(Observation::Link.digest(), Ok(None), "a link is replaced");
    let big = Observation::Oversized {
        owner: owner(),
        stamp: stamp(1),
    };
    assert_eq!(big.digest(), Ok(None), "too large to be ours: replaced");
    assert_eq!(
        Observation::Unreadable("denied".into()).digest(),
        Err("denied")
    );
    assert_eq!(Observation::Link.owner(), None, "never a link's owner");
}

#[test]
fn every_file_must_be_present_valid_and_current() {
    let now = 1_000_000;
    let rows = [
        row("/ok"),
        row("/gone"),
        row("/junk"),
        row("/old"),
        row("/denied"),
        row("/link"),
    ];
    let seen = [
        certs(now + 90 * DAY),
        Observation::Missing,
        file(b"junk", Content::Invalid),
        certs(now),
        Observation::Unreadable("Permission denied".into()),
        Observation::Link,
    ];
    let files = || rows.iter().zip(&seen);
    let v = readiness(files(), now, Duration::from_secs(30 * 86400));
    assert!(!v.ready());
    assert_eq!(v.problems.len(), 5, "{:?}", v.problems);
    assert!(v.problems[0].contains("/gone is missing"));
    assert!(v.problems[1].contains("/junk does not hold only PEM certificates"));
    assert!(v.problems[2].contains("/old expired"));
    assert!(v.problems[3].contains("Permission denied"));
    assert!(v.problems[4].contains("/link is unreadable: is a symbolic link"));
    assert_eq!(v.expiring.len(), 1);
    assert_eq!(
        (v.expiring[0].path.as_path(), v.expiring[0].not_after),
        (Path::new("/old"), now)
    );
    assert!(readiness(files().take(1), now, Duration::ZERO).ready());
}

#[test]
fn expiring_within_the_window_is_reported_but_still_ready() {
    let now = 1_000_000;
    let rows = [row("/soon"), row("/later")];
    let seen = [certs(now + 10 * DAY), certs(now + 40 * DAY)];
    let v = readiness(rows.iter().zip(&seen), now, Duration::from_secs(30 * 86400));
    assert!(v.ready());
    assert_eq!(
        v.expiring,
        vec![Expiring {
            instance_id: "i".into(),
            category: Category::International,
            path: PathBuf::from("/soon"),
            not_after: now + 10 * DAY
        }]
    );
}

#[test]
fn an_expired_certificate_is_also_expiring() {
    let now = 1_000_000;
    let rows = [row("/old"), row("/edge")];
    let seen = [certs(now - DAY), certs(now)];
    let v = readiness(rows.iter().zip(&seen), now, Duration::from_secs(30 * 86400));
    assert_eq!(v.problems.len(), 2, "{:?}", v.problems);
    let expiring: Vec<i64> = v.expiring.iter().map(|e| e.not_after).collect();
    assert_eq!(expiring, vec![now - DAY, now]);
    // Even with no warning window at all.
    assert_eq!(
        readiness(rows.iter().zip(&seen), now, Duration::ZERO)
            .expiring
            .len(),
        2
    );
}

#[test]
fn a_bundle_keeping_a_previous_ca_is_judged_by_its_current_certificates() {
    let now = 1_000_000;
    let warning = Duration::from_secs(30 * 86400);
    // The file's earliest notAfter is the kept CA's, two days off (or
    // already past); its current CA is good for 90 days.
    let keeping = |not_after_current| {
        let mut r = row("/kept");
        r.verified = Some(LastVerified {
            current_not_after: Some(not_after_current),
            ..verified(b"certs")
        });
        r
    };
    for kept_not_after in [now + 2 * DAY, now - 1] {
        let rows = [keeping(now + 90 * DAY)];
        let seen = [certs(kept_not_after)];
        let v = readiness(rows.iter().zip(&seen), now, warning);
        assert!(v.ready() && v.expiring.is_empty(), "{v:?}");
    }
    // The current CA itself expiring still counts.
    let rows = [keeping(now + 10 * DAY)];
    let seen = [certs(now + 2 * DAY)];
    let v = readiness(rows.iter().zip(&seen), now, warning);
    assert_eq!(v.expiring.len(), 1);
    assert_eq!(v.expiring[0].not_after, now + 10 * DAY);
    // A file that is not the verified bundle is judged by all it holds.
    let seen = [file(b"other", Content::Certs { not_after: now - 1 })];
    let v = readiness(rows.iter().zip(&seen), now, warning);
    assert!(!v.ready(), "{v:?}");
    assert_eq!(v.expiring[0].not_after, now - 1);
}

#[test]
fn a_pem_bundle_is_judged_by_the_one_pem_model() {
    let f = Format::PemBundle;
    assert!(matches!(f.parse(CERT_A.as_bytes()), Content::Certs { .. }));
    assert_eq!(f.parse(b"not a certificate"), Content::Invalid);
    // What the verifier refuses for its form is no certificate file either.
    assert_eq!(
        f.parse(format!("{CERT_A}{KEY}").as_bytes()),
        Content::Invalid
    );
    let foo = format!("{CERT_A}-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n");
    assert_eq!(f.parse(foo.as_bytes()), Content::Invalid);
}

#[test]
fn what_a_format_writes_is_what_it_reads_and_compares() {
    let now = std::time::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    let v = crate::certcheck::verify(CERT_A.as_bytes(), now).unwrap();
    let f = Format::PemBundle;
    let bytes = f.render(&v.pem).unwrap();
    assert_eq!(bytes.as_ref(), v.pem.as_slice());
    assert_eq!(f.digest(&v.pem), Ok(sha256(&bytes)));
    assert_eq!(
        f.parse(&bytes),
        Content::Certs {
            not_after: v.not_after()
        }
    );
}

// --- looking at the disk ---

#[test]
fn an_observation_reads_once_and_says_what_is_there() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.crt");
    assert_eq!(observe(&p, &Format::PemBundle), Observation::Missing);
    std::fs::write(&p, CERT_A).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
    let Observation::File(f) = observe(&p, &Format::PemBundle) else {
        panic!("a file")
    };
    assert_eq!(f.sha256, sha256(CERT_A.as_bytes()));
    assert!(matches!(f.content, Content::Certs { .. }));
    assert_eq!(f.owner.mode, 0o640);
    assert_eq!(reads_of(&p), 2);

    let link = d.path().join("link.crt");
    std::os::unix::fs::symlink(&p, &link).unwrap();
    assert_eq!(observe(&link, &Format::PemBundle), Observation::Link);
    let fifo = d.path().join("fifo.crt");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let Observation::Unreadable(e) = observe(&fifo, &Format::PemBundle) else {
        panic!("a FIFO is unreadable")
    };
    assert!(e.contains("is a FIFO, not a regular file"), "{e}");

    let big = d.path().join("big.crt");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(MAX_EXISTING + 1).unwrap();
    assert!(matches!(
        observe(&big, &Format::PemBundle),
        Observation::Oversized { .. }
    ));
}

#[test]
fn at_most_4_mib_of_what_is_on_disk_is_read_and_a_larger_file_is_not_ours() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("big.crt");
    std::fs::write(&p, vec![b'x'; MAX_EXISTING as usize]).unwrap();
    assert_eq!(MAX_EXISTING, 4 * 1024 * 1024);
    let Observation::File(f) = observe(&p, &Format::PemBundle) else {
        panic!("4 MiB is read whole")
    };
    assert_eq!(f.content, Content::Invalid);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&p)
        .unwrap()
        .write_all(b"x")
        .unwrap();
    let seen = observe(&p, &Format::PemBundle);
    assert!(matches!(seen, Observation::Oversized { .. }), "{seen:?}");
    // Not ours: replaced by a round, written back by a restore.
    assert_eq!(seen.digest(), Ok(None));
    assert_eq!(drift(&seen, &f.sha256), Drift::Modified);
}

#[test]
fn a_look_reads_only_a_file_that_changed() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.crt");
    let fmt = &Format::PemBundle;
    assert_eq!(look(&p, fmt, None), Observation::Missing);
    assert_eq!(reads_of(&p), 0, "nothing there is seen without a read");

    std::fs::write(&p, CERT_A).unwrap();
    let first = look(&p, fmt, None);
    assert_eq!(reads_of(&p), 1);
    assert_eq!(look(&p, fmt, Some(&first)), first);
    assert_eq!(reads_of(&p), 1, "the same file is not read again");

    // Changed in place (its size and times), or replaced (its inode).
    std::fs::write(&p, b"other").unwrap();
    let second = look(&p, fmt, Some(&first));
    assert_eq!(reads_of(&p), 2);
    assert_eq!(second.digest(), Ok(Some(sha256(b"other"))));
    let new = d.path().join("new");
    std::fs::write(&new, b"other").unwrap();
    std::fs::rename(&new, &p).unwrap();
    assert_eq!(
        look(&p, fmt, Some(&second)).digest(),
        Ok(Some(sha256(b"other")))
    );
    assert_eq!(reads_of(&p), 3);

    std::fs::remove_file(&p).unwrap();
    std::os::unix::fs::symlink("/nowhere", &p).unwrap();
    assert_eq!(look(&p, fmt, Some(&second)), Observation::Link);
    assert_eq!(reads_of(&p), 3, "a link is seen without a read");
}

#[test]
fn what_a_replacement_wrote_is_recognised_without_a_read() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.crt");
    let meta = crate::output::replace_file(&p, CERT_A.as_bytes(), &Perms::default())
        .unwrap()
        .unwrap();
    let wrote = Observation::of_file(&Format::PemBundle, CERT_A.as_bytes(), &meta);
    assert_eq!(look(&p, &Format::PemBundle, Some(&wrote)), wrote);
    assert_eq!(reads_of(&p), 0);
    assert_eq!(
        observe(&p, &Format::PemBundle),
        wrote,
        "what a read would see"
    );
}

#[test]
fn a_fifo_at_an_output_path_is_an_error_at_once_naming_the_path() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("ca.crt");
    nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    // A blocking open would wait for a writer forever.
    let (tx, rx) = std::sync::mpsc::channel();
    let q = p.clone();
    std::thread::spawn(move || tx.send(observe(&q, &Format::PemBundle)));
    let r = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("reading a FIFO at an output path blocked");
    // Says what is there; the caller names the path (see
    // `hostile_files::a_fifo_at_an_output_path_fails_fast_and_names_the_path`).
    let Observation::Unreadable(e) = r else {
        panic!("{r:?}")
    };
    assert!(e.contains("is a FIFO, not a regular file"), "{e}");
}

#[test]
fn digest_of_missing_file_is_none() {
    let d = tempfile::tempdir().unwrap();
    let fmt = &Format::PemBundle;
    assert_eq!(observe(&d.path().join("nope"), fmt).digest(), Ok(None));
    let p = d.path().join("x");
    std::fs::write(&p, b"abc").unwrap();
    assert_eq!(observe(&p, fmt).digest(), Ok(Some(sha256(b"abc"))));
    assert!(observe(d.path(), fmt).digest().is_err());
}

#[test]
fn a_symlink_at_the_path_is_seen_as_a_link_never_followed() {
    let d = tempfile::tempdir().unwrap();
    let secret = d.path().join("secret");
    std::fs::write(&secret, CERT_A).unwrap();
    for (name, target) in [
        ("dangling", d.path().join("nowhere")),
        ("to-a-certificate", secret.clone()),
    ] {
        let p = d.path().join(name);
        std::os::unix::fs::symlink(&target, &p).unwrap();
        let _ = std::os::unix::fs::lchown(&p, Some(65534), Some(65534));
        assert_eq!(observe(&p, &Format::PemBundle), Observation::Link, "{name}");
        assert_eq!(
            look(&p, &Format::PemBundle, None),
            Observation::Link,
            "{name}"
        );
        // Not our file: a round replaces the link, and takes nothing from it.
        assert_eq!(Observation::Link.digest(), Ok(None));
        assert_eq!(Observation::Link.owner(), None);
    }
}

#[test]
fn a_fifo_socket_or_directory_at_the_path_is_named_and_never_opened_for_reading() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let sock = d.path().join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let dir = d.path().join("dir");
    std::fs::create_dir(&dir).unwrap();
    for (p, what) in [
        (&fifo, "a FIFO"),
        (&sock, "a socket"),
        (&dir, "a directory"),
    ] {
        // No writer on the FIFO: a blocking open would never return.
        for seen in [
            observe(p, &Format::PemBundle),
            look(p, &Format::PemBundle, None),
        ] {
            let Observation::Unreadable(e) = seen else {
                panic!("{what}: {seen:?}")
            };
            assert!(e.contains(what), "{e}");
        }
    }
}

// --- the table ---

#[test]
fn outputs_of_an_instance_in_a_round_are_left_alone() {
    let mut t = Table::new(&two());
    t.end_round("a", vec![end("/o/a.crt", b"A")]);
    t.end_round("b", vec![end("/o/b.crt", b"B")]);
    assert_eq!(t.candidates(Path::new("/o/a.crt")).len(), 2);
    t.begin_round("a");
    let c = t.candidates(Path::new("/o"));
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].path, PathBuf::from("/o/b.crt"));
    assert!(!t.still_current(Path::new("/o/a.crt"), &sha256(b"A")));
    t.end_round("a", vec![end("/o/a.crt", b"A2")]);
    assert!(t.still_current(Path::new("/o/a.crt"), &sha256(b"A2")));
    assert!(!t.still_current(Path::new("/o/a.crt"), &sha256(b"A")));
    assert!(t.candidates(Path::new("/elsewhere/x")).is_empty());
}

#[test]
fn the_candidates_of_many_events_or_one_instance_are_those_one_at_a_time_would_give() {
    let mut t = Table::new(&config(
        "[[instances]]\nid = \"a\"\ninternational = \"/o/a.crt\"\nnational = \"/p/a.crt\"\n\
         [[instances]]\nid = \"b\"\ninternational = \"/o/b.crt\"\n\
         [[instances]]\nid = \"c\"\ninternational = \"/q/s/c.crt\"\n\
         [[instances]]\nid = \"d\"\ninternational = \"/o/d.crt\"\n",
    ));
    t.end_round("a", vec![end("/o/a.crt", b"A"), end("/p/a.crt", b"A2")]);
    t.end_round("b", vec![end("/o/b.crt", b"B")]);
    t.end_round("c", vec![end("/q/s/c.crt", b"C")]);
    // d never verified anything; b is in a round.
    t.begin_round("b");
    let paths = |rows: Vec<Row>| {
        let mut p: Vec<PathBuf> = rows.into_iter().map(|r| r.path).collect();
        p.sort();
        p
    };
    let one_at_a_time = |events: &[&str]| {
        let mut p: Vec<PathBuf> = (events.iter())
            .flat_map(|e| t.candidates(Path::new(e)))
            .map(|r| r.path)
            .collect();
        p.sort();
        p.dedup();
        p
    };
    for events in [
        &["/o/a.crt"][..],
        &["/o/.a.crt.dds-certsync-x.tmp", "/p"],
        &["/q/s", "/elsewhere/x"],
        &["/q/s/..data", "/o/d.crt"],
        &["/q"],
        &[""],
        &[],
    ] {
        let set: std::collections::HashSet<PathBuf> = events.iter().map(PathBuf::from).collect();
        assert_eq!(
            paths(t.candidates_for(&set)),
            one_at_a_time(events),
            "{events:?}"
        );
    }
    for id in ["a", "b", "c", "d", "gone"] {
        let by_hand: Vec<Row> = (t.all().into_iter())
            .filter(|r| r.instance_id == id)
            .collect();
        assert_eq!(t.candidates_of(id), by_hand, "{id}");
        assert_eq!(
            paths(t.rows_of(id)),
            paths(
                t.rows()
                    .iter()
                    .filter(|r| r.instance_id == id)
                    .cloned()
                    .collect()
            ),
            "{id}"
        );
    }
}

#[test]
fn a_round_that_verified_nothing_releases_the_instance() {
    let mut t = Table::new(&two());
    t.end_round("a", vec![end("/o/a.crt", b"A")]);
    t.begin_round("a");
    t.end_round("a", vec![]);
    assert!(t.all().is_empty());
    // What was last seen stays, for the next look.
    assert!(t.row(Path::new("/o/a.crt")).unwrap().seen.is_some());
}

#[test]
fn a_new_config_drops_outputs_no_longer_configured() {
    let mut t = Table::new(&two());
    t.end_round("a", vec![end("/o/a.crt", b"A")]);
    t.end_round("b", vec![end("/o/b.crt", b"B")]);
    t.set_config(&config(
        "[[instances]]\nid = \"a\"\ninternational = \"/o/a.crt\"\nmode = \"0600\"\n[[instances]]\nid = \"c\"\ninternational = \"/o/b.crt\"\n",
    ));
    let all = t.all();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].path, PathBuf::from("/o/a.crt"));
    assert_eq!(all[0].perms.mode, Some(0o600), "the new config's mode");
    let b = t.row(Path::new("/o/b.crt")).unwrap();
    assert_eq!(
        (b.instance_id.as_str(), &b.verified, &b.seen),
        ("c", &None, &None)
    );
}

#[test]
fn a_restore_writes_with_the_configured_or_last_seen_mode_and_owner() {
    let mut r = row("/o/a.crt");
    assert_eq!(r.restore_perms(), Perms::default());
    r.owner = Some(Owner {
        mode: 0o6777,
        uid: 7,
        gid: 8,
    });
    let p = r.restore_perms();
    assert_eq!((p.mode, p.uid, p.gid), (Some(0o775), Some(7), Some(8)));
    r.perms.mode = Some(0o600);
    assert_eq!(r.restore_perms().mode, Some(0o600));
}

#[test]
fn an_observation_older_than_what_the_table_learnt_is_not_recorded() {
    let mut t = Table::new(&two());
    let a = Path::new("/o/a.crt");
    t.saw(a, None, Observation::Missing);
    assert_eq!(t.row(a).unwrap().seen, Some(Observation::Missing));
    t.wrote(a, Some(certs(1)));
    t.saw(a, Some(&Observation::Missing), Observation::Link);
    assert_eq!(t.row(a).unwrap().seen, Some(certs(1)));
}

#[test]
fn an_assessment_reads_only_the_files_that_changed() {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a.crt");
    let b = d.path().join("b.crt");
    let outputs = Outputs::new(&config(&format!(
        "[[instances]]\nid = \"a\"\ninternational = \"{}\"\nnational = \"{}\"\n",
        a.display(),
        b.display()
    )));
    std::fs::write(&a, CERT_A).unwrap();
    let (rows, v) = outputs.assess(1_795_000_000);
    assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
    assert!(v.problems[0].contains("b.crt is missing"));
    assert_eq!(rows.len(), 2);
    assert_eq!((reads_of(&a), reads_of(&b)), (1, 0));
    std::fs::write(&b, CERT_A).unwrap();
    let (_, v) = outputs.assess(1_795_000_000);
    assert!(v.ready(), "{:?}", v.problems);
    assert_eq!((reads_of(&a), reads_of(&b)), (1, 1));
}

fn store_format(password: SecretSource) -> Format {
    Format::Truststore(Arc::new(Truststore {
        password,
        profile: crate::truststore::Profile::Modern,
    }))
}

#[test]
fn a_truststore_reads_as_its_expected_digest_and_its_earliest_expiry() {
    let f = store_format(SecretSource::Inline(crate::secret::Secret::new("changeit")));
    let pem = CERT_A.as_bytes();
    let bytes = f.render(pem).unwrap().into_owned();
    assert_ne!(bytes, pem);
    let not_after = certcheck::inspect_pem(pem).unwrap()[0].not_after;
    assert_eq!(
        f.read(&bytes),
        (f.digest(pem).unwrap(), Content::Certs { not_after })
    );
    // Another write of the same: other bytes, the same reading.
    assert_eq!(f.read(&f.render(pem).unwrap()), f.read(&bytes));
    // The PEM format is the file itself.
    let p = Format::PemBundle;
    assert_eq!(p.render(pem).unwrap(), pem);
    assert_eq!(p.read(pem).0, p.digest(pem).unwrap());
    assert_eq!(p.digest(pem).unwrap(), sha256(pem));
}

#[test]
fn a_truststore_that_does_not_open_or_was_altered_is_invalid_and_differs() {
    let f = store_format(SecretSource::Inline(crate::secret::Secret::new("changeit")));
    let other = store_format(SecretSource::Inline(crate::secret::Secret::new(
        "other-pass",
    )));
    let pem = CERT_A.as_bytes();
    let expected = f.digest(pem).unwrap();
    let bytes = f.render(pem).unwrap().into_owned();
    let mut altered = bytes.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    for (what, format, b) in [
        ("another password", &other, &bytes),
        ("a flipped byte", &f, &altered),
        ("a PEM file", &f, &pem.to_vec()),
    ] {
        let (digest, content) = format.read(b);
        assert_ne!(digest, expected, "{what}");
        assert_eq!(content, Content::Invalid, "{what}");
    }
    assert!(f.invalid().contains("password"), "{}", f.invalid());
}

#[test]
fn a_truststore_password_file_is_read_when_used_and_never_shown() {
    let d = tempfile::tempdir().unwrap();
    let pw = d.path().join("pass");
    let f = store_format(SecretSource::File(pw.clone()));
    let pem = CERT_A.as_bytes();
    let e = f.render(pem).unwrap_err();
    assert!(e.contains(&pw.display().to_string()), "{e}");
    std::fs::write(&pw, "first-Pass\n").unwrap();
    let bytes = f.render(pem).unwrap().into_owned();
    assert!(matches!(f.read(&bytes).1, Content::Certs { .. }));
    // A new password in the file: the store no longer opens with it.
    std::fs::write(&pw, "second-Pass\n").unwrap();
    assert_eq!(f.read(&bytes).1, Content::Invalid);
    std::fs::write(&pw, "pässwörd\n").unwrap();
    let e = f.render(pem).unwrap_err();
    assert!(e.contains("ASCII") && !e.contains("pässwörd"), "{e}");
}

#[test]
fn the_sweep_reads_every_file_but_parses_only_changed_bytes() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("ca.crt");
    std::fs::write(&p, CERT_A).unwrap();
    let pem = Format::PemBundle;
    let first = observe(&p, &pem);
    assert!(matches!(&first, Observation::File(f) if matches!(f.content, Content::Certs { .. })));
    // Unchanged bytes: the same observation as a fresh read.
    assert_eq!(observe_again(&p, &pem, Some(&first)), first);
    assert_eq!(observe_again(&p, &pem, None), first);
    // The content is taken from `last` when the bytes are the same (a
    // doctored `last` shows which was used) ...
    let Observation::File(mut doctored) = first.clone() else {
        unreachable!()
    };
    doctored.content = Content::Invalid;
    let doctored = Observation::File(doctored);
    let again = observe_again(&p, &pem, Some(&doctored));
    assert!(matches!(&again, Observation::File(f) if f.content == Content::Invalid));
    // ... and never when they changed, or for a truststore (whose digest
    // is not the file's SHA-256).
    std::fs::write(&p, [CERT_A, KEY].concat()).unwrap();
    let changed = observe_again(&p, &pem, Some(&first));
    assert_eq!(changed, observe(&p, &pem));
    assert!(matches!(&changed, Observation::File(f) if f.content == Content::Invalid));
    std::fs::write(&p, CERT_A).unwrap();
    let store = store_format(SecretSource::Inline(crate::secret::Secret::new("changeit")));
    assert_eq!(observe_again(&p, &store, Some(&first)), observe(&p, &store));
    // Each is one read.
    let before = reads_of(&p);
    observe_again(&p, &pem, Some(&first));
    assert_eq!(reads_of(&p), before + 1);
}
