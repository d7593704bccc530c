//! Truststores: aliases, identity, the round trip through PKCS#12, and what
//! a planted or altered store on disk counts as; the password never shown.

use super::*;

fn ca(name: &str) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    if !name.is_empty() {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
    }
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().pem().into_bytes()
}

fn pw(s: &str) -> Secret {
    Secret::new(s)
}

fn alias_of(entries: &[Entry], der_of: &[u8]) -> String {
    let der = entries_from_pem(der_of).unwrap().remove(0).der;
    entries.iter().find(|e| e.der == der).unwrap().alias.clone()
}

#[test]
fn a_store_round_trips_and_its_identity_ignores_salts() {
    let entries = entries_from_pem(&[ca("Huawei DDS CA"), ca("Other Root")].concat()).unwrap();
    for profile in [Profile::Modern, Profile::Legacy] {
        let a = encode(&entries, &pw("changeit"), profile).unwrap();
        let b = encode(&entries, &pw("changeit"), profile).unwrap();
        assert_ne!(a, b, "{profile}: new salts each time");
        assert_eq!(params_of(&a).unwrap(), profile.expected_params());
        assert_eq!(decode(&a, &pw("changeit"), profile).unwrap(), entries);
        let id = identity(&entries, profile);
        assert_eq!(identity_on_disk(&a, &pw("changeit"), profile), id);
        assert_eq!(identity_on_disk(&b, &pw("changeit"), profile), id);
    }
}

#[test]
fn another_password_profile_or_set_is_a_different_store() {
    let one = entries_from_pem(&ca("A")).unwrap();
    let two = entries_from_pem(&[ca("A"), ca("B")].concat()).unwrap();
    let store = encode(&one, &pw("changeit"), Profile::Modern).unwrap();
    let id = identity(&one, Profile::Modern);
    // Another password: does not open; counts as its raw bytes.
    let e = decode(&store, &pw("other"), Profile::Modern).unwrap_err();
    assert!(matches!(e, StoreError::DoesNotOpen(_)), "{e}");
    assert!(!e.to_string().contains("other"), "{e}");
    assert_eq!(
        identity_on_disk(&store, &pw("other"), Profile::Modern),
        sha256(&store)
    );
    // Another profile: refused from the parameters alone.
    let e = decode(&store, &pw("changeit"), Profile::Legacy).unwrap_err();
    assert!(matches!(e, StoreError::OtherFormat { .. }), "{e}");
    assert_ne!(identity(&one, Profile::Legacy), id);
    // Another set.
    assert_ne!(identity(&two, Profile::Modern), id);
    // A byte flipped anywhere: never the identity.
    for i in [0, store.len() / 3, store.len() / 2, store.len() - 1] {
        let mut bad = store.clone();
        bad[i] ^= 0x01;
        assert_ne!(
            identity_on_disk(&bad, &pw("changeit"), Profile::Modern),
            id,
            "byte {i}"
        );
    }
    // Truncated, empty, PEM.
    for bad in [&store[..store.len() / 2], &[][..], &ca("A")[..]] {
        let e = decode(bad, &pw("changeit"), Profile::Modern).unwrap_err();
        assert!(matches!(e, StoreError::NotPkcs12(_)), "{e}");
    }
}

#[test]
fn a_store_with_a_key_or_an_untrusted_certificate_is_foreign() {
    use p12_keystore::{LocalKeyId, PrivateKeyChain};
    let cert = entries_from_pem(&ca("A")).unwrap().remove(0);
    let c = Certificate::from_der(&cert.der).unwrap();
    // What keytool -importkeypair would make: a key with its chain.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut ks = KeyStore::new();
    ks.add_entry(
        "k",
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(
            LocalKeyId::from(vec![1, 2, 3, 4]),
            p12_keystore::PrivateKey::from_der(&key.serialize_der()).unwrap(),
            vec![c],
        )),
    );
    let bytes = ks.writer("changeit").write().unwrap();
    let e = decode(&bytes, &pw("changeit"), Profile::Modern).unwrap_err();
    assert_eq!(e, StoreError::ForeignContent("a private key"));
}

#[test]
fn aliases_are_the_common_name_and_a_short_digest_stable_and_unique() {
    let (a, b) = (ca("Huawei DDS CA"), ca("Ünïcode / weird   CN!"));
    let e = entries_from_pem(&[a.clone(), b.clone()].concat()).unwrap();
    let alias_a = alias_of(&e, &a);
    let alias_b = alias_of(&e, &b);
    assert!(alias_a.starts_with("huawei-dds-ca-"), "{alias_a}");
    // ASCII only: what is not becomes one dash, none leading.
    assert!(alias_b.starts_with("n-code-weird-cn-"), "{alias_b}");
    assert_eq!(alias_a.rsplit('-').next().unwrap().len(), 8);
    // Stable: the same certificate has the same alias whatever else is
    // in the set, and in whatever order.
    assert_eq!(alias_of(&entries_from_pem(&a).unwrap(), &a), alias_a);
    assert_eq!(
        entries_from_pem(&[b.clone(), a.clone()].concat()).unwrap(),
        e
    );
    // Duplicates are one entry.
    assert_eq!(
        entries_from_pem(&[a.clone(), b.clone(), a.clone()].concat()).unwrap(),
        e
    );
    // No common name.
    let anon = ca("");
    assert!(alias_of(&entries_from_pem(&anon).unwrap(), &anon).starts_with("ca-"));
    // Nothing that is a certificate.
    assert_eq!(
        entries_from_pem(b"").unwrap_err(),
        StoreError::NoCertificate
    );
}

#[test]
fn aliases_that_would_clash_get_longer_digests() {
    let h1 = format!("{}{}", "ab".repeat(8), "0".repeat(48));
    let h2 = format!("{}{}", "ab".repeat(8), "1".repeat(48));
    let h3 = format!("{}{}", "ab".repeat(4), "2".repeat(56));
    let named = vec![
        ("ca".to_string(), h1.clone()),
        ("ca".to_string(), h2.clone()),
        ("other".to_string(), h1.clone()),
        ("ca".to_string(), h3.clone()),
    ];
    let aliases = assign_aliases(&named);
    assert_eq!(aliases[0], format!("ca-{h1}"));
    assert_eq!(aliases[1], format!("ca-{h2}"));
    assert_eq!(aliases[2], format!("other-{}", &h1[..8]));
    assert_eq!(aliases[3], format!("ca-{}", &h3[..16]));
    let unique: std::collections::HashSet<_> = aliases.iter().collect();
    assert_eq!(unique.len(), 4);
}

#[test]
fn a_rendered_store_reads_back_as_its_expected_identity() {
    let pem = [ca("A"), ca("B")].concat();
    for profile in [Profile::Modern, Profile::Legacy] {
        let bytes = render(&pem, &pw("changeit"), profile).unwrap();
        let r = read(&bytes, &pw("changeit"), profile);
        assert_eq!(r.digest, expected(&pem, profile).unwrap(), "{profile}");
        assert_eq!(r.entries.unwrap(), entries_from_pem(&pem).unwrap());
        let wrong = read(&bytes, &pw("other"), profile);
        assert_eq!(wrong.digest, sha256(&bytes));
        assert!(wrong.entries.is_err());
    }
    assert_eq!(
        render(b"", &pw("x"), Profile::Modern),
        Err(StoreError::NoCertificate)
    );
}

#[test]
fn the_password_never_appears_in_an_error_or_debug() {
    let entries = entries_from_pem(&ca("A")).unwrap();
    let store = encode(&entries, &pw("s3cret-Pass"), Profile::Modern).unwrap();
    for p in ["wrong-Pass", "s3cret-Pass"] {
        for profile in [Profile::Modern, Profile::Legacy] {
            if let Err(e) = decode(&store, &pw(p), profile) {
                assert!(!format!("{e} {e:?}").contains("Pass"), "{e:?}");
            }
        }
    }
}
