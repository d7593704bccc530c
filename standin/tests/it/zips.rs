//! Downloads in other forms: a slot served as DER or zipped (kept across a
//! rotation), and hostile zips as faults, from the library and over the
//! admin API.

use dds_standin::{Fault, FaultRule, Form, HostileZip, certificate_zip, pem_to_der};

use crate::{INSTANCE, link, setup};

async fn download(client: &reqwest::Client, url: &str) -> Vec<u8> {
    let resp = client.get(url).send().await.expect("download");
    assert_eq!(resp.status(), 200);
    resp.bytes().await.expect("body").to_vec()
}

#[tokio::test]
async fn a_slot_is_served_in_its_form_across_rotations() {
    let (standin, client) = setup();
    for (form, category) in [(Form::Der, "international"), (Form::Zip, "national")] {
        standin.set_form(INSTANCE, category, form);
    }
    for round in 0..2 {
        let pem = standin.cert_pem(INSTANCE, "international");
        let url = link(&standin, &client, INSTANCE, "international").await;
        let body = download(&client, &url).await;
        assert_eq!(Some(body), pem_to_der(pem.as_bytes()), "round {round}");
        let pem = standin.cert_pem(INSTANCE, "national");
        let url = link(&standin, &client, INSTANCE, "national").await;
        assert_eq!(
            download(&client, &url).await,
            certificate_zip(pem.as_bytes())
        );
        standin.rotate(INSTANCE, "international");
        standin.rotate(INSTANCE, "national");
    }
}

#[tokio::test]
async fn forms_and_hostile_zips_over_the_admin_api() {
    let (standin, client) = setup();
    let base = format!("{}/__standin", standin.api_url());
    let post = |q: String| {
        let client = client.clone();
        let url = format!("{base}/{q}");
        async move { client.post(url).send().await.expect("admin") }
    };
    let r = post(format!(
        "form?instance={INSTANCE}&category=international&form=der-zip"
    ))
    .await;
    assert_eq!(r.status(), 200);
    let url = link(&standin, &client, INSTANCE, "international").await;
    let body = download(&client, &url).await;
    assert!(body.starts_with(b"PK\x03\x04"));
    assert!(body.windows(6).any(|w| w == b"ca.cer"));

    let r = post(format!(
        "faults?kind=download-zip&zip=traversal&instance={INSTANCE}&times=1"
    ))
    .await;
    assert_eq!(r.status(), 200);
    let url = link(&standin, &client, INSTANCE, "international").await;
    let pem = standin.cert_pem(INSTANCE, "international");
    assert_eq!(
        download(&client, &url).await,
        HostileZip::Traversal.build(pem.as_bytes())
    );

    for bad in [
        "form?instance=nope&category=international&form=der",
        "form?instance=instance-1&category=international&form=tar",
        "faults?kind=download-zip&zip=nope",
        "faults?kind=download-zip",
    ] {
        assert_eq!(post(bad.to_owned()).await.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn every_hostile_zip_is_served_around_the_current_certificate() {
    let (standin, client) = setup();
    for kind in HostileZip::ALL {
        standin.push_fault(FaultRule::once(Fault::DownloadZip(kind)).for_category("national"));
        let url = link(&standin, &client, INSTANCE, "national").await;
        let pem = standin.cert_pem(INSTANCE, "national");
        let body = download(&client, &url).await;
        match kind {
            // A fresh private key each time: compare the member names.
            HostileZip::NoCertificate | HostileZip::KeyInside => {
                let names = |z: &[u8]| {
                    ["ca.pem", "ca.key", "server.pem", "readme.txt"]
                        .map(|n| z.windows(n.len()).any(|w| w == n.as_bytes()))
                };
                assert!(body.starts_with(b"PK\x03\x04"), "{kind:?}");
                assert_eq!(names(&body), names(&kind.build(pem.as_bytes())), "{kind:?}");
            }
            _ => assert_eq!(body, kind.build(pem.as_bytes()), "{kind:?}"),
        }
    }
}
