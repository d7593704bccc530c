//! The rules of [`super::decide`], case by case, and a property test over
//! whole histories of rounds.

use super::*;
use proptest::prelude::*;

const DAY: i64 = 86_400;
const KEEP: Duration = Duration::from_secs(30 * 86_400);
const NOW: i64 = 1_800_000_000;

/// A certificate named `n`, valid until `not_after`.
fn cert(n: u8, not_after: i64) -> CertInfo {
    CertInfo {
        subject: format!("CN=ca-{n}"),
        not_before: 0,
        not_after,
        ca: Some(true),
        signature_oid: "1.2.840.10045.4.3.2".into(),
        der: vec![n],
        fingerprint: [n; 32],
    }
}

fn c(n: u8) -> CertInfo {
    cert(n, NOW + 365 * DAY)
}

fn names(certs: &[&CertInfo]) -> Vec<u8> {
    certs.iter().map(|c| c.der[0]).collect()
}

fn input<'a>(prev: Option<&'a State>, served: &'a [CertInfo], now: i64) -> Input<'a> {
    Input {
        previous: prev,
        in_file: &[],
        served,
        now,
        keep: KEEP,
        allow_non_ca: false,
    }
}

fn state(current: &[CertInfo], kept: &[(CertInfo, i64)]) -> State {
    State {
        current: current.to_vec(),
        kept: kept
            .iter()
            .map(|(c, t)| Kept {
                cert: c.clone(),
                superseded_at: *t,
            })
            .collect(),
    }
}

#[test]
fn a_rotation_keeps_the_previous_ca_after_the_new_one() {
    let prev = state(&[c(1)], &[]);
    let d = decide(input(Some(&prev), &[c(2)], NOW));
    assert_eq!(names(&d.bundle()), vec![2, 1]);
    assert_eq!(d.state.kept[0].superseded_at, NOW);
    assert_eq!(
        d.events,
        vec![Event::Kept {
            cert: c(1),
            drop_at: NOW + 30 * DAY
        }]
    );
    assert!(d.served_changed && !d.only_drops());
    assert_eq!(d.next_drop(KEEP), Some(NOW + 30 * DAY));
}

#[test]
fn an_unchanged_upstream_with_a_kept_ca_is_no_change() {
    let prev = state(&[c(2)], &[(c(1), NOW - DAY)]);
    let d = decide(input(Some(&prev), &[c(2)], NOW));
    assert_eq!(d.state, prev);
    assert!(d.events.is_empty());
    assert!(!d.served_changed);
}

#[test]
fn a_kept_ca_leaves_when_the_window_has_passed_and_not_a_second_before() {
    let prev = state(&[c(2)], &[(c(1), NOW)]);
    let due = NOW + 30 * DAY;
    let d = decide(input(Some(&prev), &[c(2)], due - 1));
    assert_eq!(names(&d.bundle()), vec![2, 1]);
    let d = decide(input(Some(&prev), &[c(2)], due));
    assert_eq!(names(&d.bundle()), vec![2]);
    assert_eq!(
        d.events,
        vec![Event::Dropped {
            cert: c(1),
            why: Why::WindowPassed,
            drop_at: due
        }]
    );
    assert!(d.only_drops());
    assert_eq!(d.next_drop(KEEP), None);
}

#[test]
fn a_kept_ca_leaves_when_it_expires_before_the_window_ends() {
    let short = cert(1, NOW + 5 * DAY);
    let prev = state(std::slice::from_ref(&short), &[]);
    let d = decide(input(Some(&prev), &[c(2)], NOW));
    assert_eq!(
        d.events,
        vec![Event::Kept {
            cert: short.clone(),
            drop_at: NOW + 5 * DAY + 1
        }]
    );
    // Valid through its notAfter second; gone the second after.
    let at = |t| decide(input(Some(&d.state), &[c(2)], t));
    assert_eq!(names(&at(NOW + 5 * DAY).bundle()), vec![2, 1]);
    let gone = at(NOW + 5 * DAY + 1);
    assert_eq!(names(&gone.bundle()), vec![2]);
    assert_eq!(
        gone.events,
        vec![Event::Dropped {
            cert: short,
            why: Why::Expired,
            drop_at: NOW + 5 * DAY + 1
        }]
    );
}

#[test]
fn an_expired_ca_is_never_kept() {
    let old = cert(1, NOW - 1);
    let prev = state(std::slice::from_ref(&old), &[]);
    let d = decide(input(Some(&prev), &[c(2)], NOW));
    assert_eq!(names(&d.bundle()), vec![2]);
    assert_eq!(
        d.events,
        vec![Event::NotKept {
            cert: old.clone(),
            why: Why::Expired
        }]
    );
    // Nor one found in the file without a record.
    let d = decide(Input {
        in_file: std::slice::from_ref(&old),
        ..input(None, &[c(2)], NOW)
    });
    assert_eq!(names(&d.bundle()), vec![2]);
    assert_eq!(
        d.events,
        vec![Event::NotKept {
            cert: old,
            why: Why::Expired
        }]
    );
}

#[test]
fn zero_replaces_outright() {
    let zero = |i: Input<'_>| {
        decide(Input {
            keep: Duration::ZERO,
            ..i
        })
    };
    let prev = state(&[c(1)], &[(c(3), NOW - DAY)]);
    let d = zero(input(Some(&prev), &[c(2)], NOW));
    assert_eq!(names(&d.bundle()), vec![2]);
    assert_eq!(
        d.events,
        vec![
            Event::NotKept {
                cert: c(1),
                why: Why::WindowPassed
            },
            Event::Dropped {
                cert: c(3),
                why: Why::WindowPassed,
                drop_at: NOW - DAY
            }
        ]
    );
    let d = zero(Input {
        in_file: &[c(1)],
        ..input(None, &[c(2)], NOW)
    });
    assert_eq!(names(&d.bundle()), vec![2]);
    assert!(d.events.is_empty(), "{:?}", d.events);
}

#[test]
fn a_kept_ca_served_again_becomes_current_again() {
    let prev = state(&[c(2)], &[(c(1), NOW - DAY)]);
    let d = decide(input(Some(&prev), &[c(1)], NOW));
    assert_eq!(names(&d.bundle()), vec![1, 2]);
    assert_eq!(
        d.events,
        vec![
            Event::Kept {
                cert: c(2),
                drop_at: NOW + 30 * DAY
            },
            Event::Restored { cert: c(1) }
        ]
    );
    // Its old window is forgotten: superseded again later, it starts anew.
    let later = decide(input(Some(&d.state), &[c(2)], NOW + 40 * DAY));
    assert_eq!(names(&later.bundle()), vec![2, 1]);
    assert_eq!(later.state.kept[0].superseded_at, NOW + 40 * DAY);
}

#[test]
fn without_a_record_what_the_file_holds_is_kept_from_now() {
    let in_file = [c(2), c(1), c(3)];
    let d = decide(Input {
        in_file: &in_file,
        ..input(None, &[c(2)], NOW)
    });
    assert_eq!(names(&d.bundle()), vec![2, 1, 3]);
    assert!(d.state.kept.iter().all(|k| k.superseded_at == NOW));
    assert_eq!(
        d.events,
        vec![
            Event::KeptWithoutRecord {
                cert: c(1),
                drop_at: NOW + 30 * DAY
            },
            Event::KeptWithoutRecord {
                cert: c(3),
                drop_at: NOW + 30 * DAY
            }
        ]
    );
    assert!(d.served_changed);
}

#[test]
fn with_a_record_the_file_is_not_consulted() {
    // Something planted in the file is not adopted while the state holds.
    let prev = state(&[c(2)], &[]);
    let d = decide(Input {
        in_file: &[c(2), c(9)],
        ..input(Some(&prev), &[c(2)], NOW)
    });
    assert_eq!(names(&d.bundle()), vec![2]);
    assert!(d.events.is_empty());
}

#[test]
fn a_non_ca_found_in_the_file_is_kept_only_when_allowed() {
    let leaf = CertInfo {
        ca: Some(false),
        ..c(5)
    };
    let served = [c(2)];
    let base = Input {
        in_file: std::slice::from_ref(&leaf),
        ..input(None, &served, NOW)
    };
    let d = decide(base);
    assert_eq!(names(&d.bundle()), vec![2]);
    assert_eq!(
        d.events,
        vec![Event::NotKept {
            cert: leaf.clone(),
            why: Why::NotCa
        }]
    );
    let d = decide(Input {
        allow_non_ca: true,
        ..base
    });
    assert_eq!(names(&d.bundle()), vec![2, 5]);
}

#[test]
fn at_most_max_kept_stay_and_the_oldest_go_first() {
    let kept: Vec<(CertInfo, i64)> = (0..MAX_KEPT as u8)
        .map(|n| (c(100 + n), NOW - DAY - i64::from(n)))
        .collect();
    let prev = state(&[c(1)], &kept);
    let d = decide(input(Some(&prev), &[c(2)], NOW));
    assert_eq!(d.state.kept.len(), MAX_KEPT);
    assert_eq!(d.state.kept[0].cert, c(1));
    let oldest = c(100 + MAX_KEPT as u8 - 1);
    assert!(d.events.contains(&Event::Dropped {
        cert: oldest,
        why: Why::TooMany,
        drop_at: NOW
    }));
}

#[test]
fn a_shorter_keep_previous_applies_to_certificates_already_kept() {
    let prev = state(&[c(2)], &[(c(1), NOW - 10 * DAY)]);
    let d = decide(Input {
        keep: Duration::from_secs(7 * 86_400),
        ..input(Some(&prev), &[c(2)], NOW)
    });
    assert_eq!(names(&d.bundle()), vec![2]);
    assert!(d.only_drops());
}

fn arb_cert() -> impl Strategy<Value = CertInfo> {
    // Eight certificates; some expire during the history.
    (0u8..8).prop_map(|n| cert(n, NOW + i64::from(n) * 7 * DAY))
}

fn arb_served() -> impl Strategy<Value = Vec<CertInfo>> {
    proptest::collection::vec(arb_cert(), 1..3).prop_map(|mut v| {
        let mut seen = Vec::new();
        v.retain(|c| {
            let new = !seen.contains(&c.fingerprint);
            seen.push(c.fingerprint);
            new
        });
        v
    })
}

proptest! {
    /// Through any history of rounds (served sets, time steps, a lost
    /// state now and then), every certificate that stops being served
    /// stays in the bundle, after the served ones, exactly until its
    /// window passes or it expires; nothing else is in the bundle, and
    /// deciding again at once changes nothing.
    #[test]
    fn kept_exactly_until_the_window_passes_or_it_expires(
        rounds in proptest::collection::vec((arb_served(), 0i64..20 * DAY, proptest::bool::weighted(0.1)), 1..12),
        keep_days in 0u64..40,
    ) {
        let keep = Duration::from_secs(keep_days * 86_400);
        let mut now = NOW;
        let mut prev: Option<State> = None;
        let mut file: Vec<CertInfo> = Vec::new();
        // Fingerprint → when it was last superseded.
        let mut superseded: Vec<(Sha256Digest, CertInfo, i64)> = Vec::new();
        let mut last_served: Vec<CertInfo> = Vec::new();
        for (served, step, lose_state) in rounds {
            now += step;
            let state = if lose_state { None } else { prev.clone() };
            for old in &last_served {
                if !contains(&served, &old.fingerprint) {
                    superseded.retain(|(f, ..)| *f != old.fingerprint);
                    superseded.push((old.fingerprint, old.clone(), now));
                }
            }
            superseded.retain(|(f, ..)| !contains(&served, f));
            if lose_state {
                // The window of what the file holds starts again now.
                for (f, _, t) in &mut superseded {
                    if contains(&file, f) { *t = now; }
                }
                superseded.retain(|(f, ..)| contains(&file, f));
            }
            let d = decide(Input {
                previous: state.as_ref(),
                in_file: &file,
                served: &served,
                now,
                keep,
                allow_non_ca: false,
            });
            let bundle: Vec<CertInfo> = d.bundle().into_iter().cloned().collect();
            prop_assert_eq!(&bundle[..served.len()], &served[..]);
            let mut expected: Vec<Sha256Digest> = superseded
                .iter()
                .filter(|(_, c, t)| now < drop_at(*t, c, keep))
                .map(|(f, ..)| *f)
                .collect();
            expected.sort();
            let mut got: Vec<Sha256Digest> = bundle[served.len()..].iter().map(|c| c.fingerprint).collect();
            got.sort();
            prop_assert_eq!(got, expected.clone());
            for k in &d.state.kept {
                prop_assert!(k.cert.not_after >= now, "an expired certificate is kept");
            }
            // The next drop is the earliest window's end.
            let next = superseded.iter().filter(|(f, ..)| expected.contains(f)).map(|(_, c, t)| drop_at(*t, c, keep)).min();
            prop_assert_eq!(d.next_drop(keep), next);
            // Stable: the same round again is no change.
            let again = decide(Input { previous: Some(&d.state), in_file: &bundle, served: &served, now, keep, allow_non_ca: false });
            prop_assert_eq!(&again.state, &d.state);
            prop_assert!(again.events.is_empty());
            superseded.retain(|(f, ..)| expected.contains(f));
            file = bundle;
            last_served = served;
            prev = Some(d.state);
        }
    }
}
