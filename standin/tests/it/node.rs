//! The instance's TLS listener: what it presents, how its switch is
//! scripted in both orders apart from the download link, and what it counts.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use dds_standin::{Handshakes, INTERNATIONAL, StandIn, client_config, tls_handshake};
use rustls::pki_types::ServerName;

use crate::{INSTANCE, setup};

/// One handshake with the tests' 5 s bound; see [`tls_handshake`].
fn handshake(addr: SocketAddr, ca_pem: &str, send: &[u8]) -> Result<(), String> {
    tls_handshake(addr, ca_pem.as_bytes(), send, Duration::from_secs(5))
}

/// Polls `f` until it holds, for at most 5 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn verifies(standin: &StandIn, ca_pem: &str) -> bool {
    handshake(standin.instance_addr(INSTANCE), ca_pem, b"").is_ok()
}

#[tokio::test]
async fn the_listener_presents_a_certificate_of_the_ca_the_link_serves() {
    let (standin, _client) = setup();
    let link_ca = standin.cert_pem(INSTANCE, INTERNATIONAL);
    assert_eq!(standin.server_ca_pem(INSTANCE), link_ca);
    assert!(verifies(&standin, &link_ca));
    // Not with some other CA: the stand-in's own TLS CA, or another instance's.
    assert!(!verifies(&standin, &standin.ca_pem()));
    standin.add_instance("project-1", "instance-2");
    assert!(!verifies(
        &standin,
        &standin.cert_pem("instance-2", INTERNATIONAL)
    ));
    assert_ne!(
        standin.instance_addr("instance-2"),
        standin.instance_addr(INSTANCE)
    );
}

#[tokio::test]
async fn link_first_the_server_keeps_its_ca_until_it_follows_the_link() {
    let (standin, _client) = setup();
    let old = standin.cert_pem(INSTANCE, INTERNATIONAL);
    let new = standin.rotate(INSTANCE, INTERNATIONAL);
    assert_ne!(new, old);
    assert_eq!(standin.server_ca_pem(INSTANCE), old);
    assert!(verifies(&standin, &old));
    assert!(!verifies(&standin, &new));
    // A file holding both works throughout.
    let both = format!("{new}{old}");
    assert!(verifies(&standin, &both));

    standin.server_follow_link(INSTANCE);
    assert_eq!(standin.server_ca_pem(INSTANCE), new);
    assert!(verifies(&standin, &new));
    assert!(!verifies(&standin, &old));
    assert!(verifies(&standin, &both));
}

#[tokio::test]
async fn server_first_the_link_keeps_its_ca_until_it_follows_the_server() {
    let (standin, _client) = setup();
    let old = standin.cert_pem(INSTANCE, INTERNATIONAL);
    let new = standin.server_rotate_first(INSTANCE);
    assert_ne!(new, old);
    assert_eq!(
        standin.cert_pem(INSTANCE, INTERNATIONAL),
        old,
        "the link has not moved"
    );
    assert!(verifies(&standin, &new));
    assert!(!verifies(&standin, &old));

    standin.link_follow_server(INSTANCE);
    assert_eq!(standin.cert_pem(INSTANCE, INTERNATIONAL), new);
    // A later rotation mints a distinct generation, never the same name twice.
    let newer = standin.rotate(INSTANCE, INTERNATIONAL);
    assert_ne!(newer, new);
    assert!(newer.contains("-----BEGIN CERTIFICATE-----"));
}

#[tokio::test]
async fn handshakes_and_bytes_received_are_counted() {
    let (standin, _client) = setup();
    let addr = standin.instance_addr(INSTANCE);
    let ca = standin.cert_pem(INSTANCE, INTERNATIONAL);
    handshake(addr, &ca, b"").expect("handshake");
    handshake(addr, &ca, b"hello").expect("handshake");
    assert!(handshake(addr, &standin.ca_pem(), b"").is_err());
    eventually("the counts", || {
        standin.handshakes(INSTANCE)
            == Handshakes {
                ok: 2,
                failed: 1,
                bytes_received: 5,
            }
    });
}

#[tokio::test]
async fn the_listener_sends_nothing_after_the_handshake() {
    let (standin, _client) = setup();
    let addr = standin.instance_addr(INSTANCE);
    let ca = standin.cert_pem(INSTANCE, INTERNATIONAL);
    // Done by hand: after the handshake, a read sees only the close.
    let config = client_config(ca.as_bytes()).expect("client config");
    let name = ServerName::IpAddress(addr.ip().into());
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("conn");
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).expect("handshake");
    }
    let mut buf = [0u8; 16];
    let read = rustls::Stream::new(&mut conn, &mut tcp).read(&mut buf);
    assert!(
        !matches!(read, Ok(n) if n > 0),
        "the listener sent application data: {read:?}"
    );
}

#[tokio::test]
async fn adding_the_instance_again_keeps_the_address_and_presents_the_new_ca() {
    let (standin, _client) = setup();
    let addr = standin.instance_addr(INSTANCE);
    standin.add_instance("project-1", INSTANCE);
    assert_eq!(standin.instance_addr(INSTANCE), addr);
    let ca = standin.cert_pem(INSTANCE, INTERNATIONAL);
    assert!(verifies(&standin, &ca));
}

#[tokio::test]
async fn the_switch_is_scripted_over_the_admin_api() {
    let (standin, client) = setup();
    let base = format!("{}/__standin", standin.api_url());
    let old = standin.cert_pem(INSTANCE, INTERNATIONAL);
    let info: serde_json::Value = client
        .get(format!("{base}/server?instance={INSTANCE}"))
        .send()
        .await
        .expect("server info")
        .json()
        .await
        .expect("json");
    assert_eq!(info["address"], standin.instance_addr(INSTANCE).to_string());
    assert_eq!(info["ca_pem"], old);

    // Server first, then the link.
    let resp = client
        .post(format!("{base}/server?instance={INSTANCE}&to=new"))
        .send()
        .await
        .expect("switch");
    assert_eq!(resp.status(), 200);
    let new = resp.text().await.expect("body");
    assert_eq!(standin.server_ca_pem(INSTANCE), new);
    assert_eq!(standin.cert_pem(INSTANCE, INTERNATIONAL), old);
    let resp = client
        .post(format!("{base}/link?instance={INSTANCE}&to=server"))
        .send()
        .await
        .expect("link");
    assert_eq!(resp.status(), 200);
    assert_eq!(standin.cert_pem(INSTANCE, INTERNATIONAL), new);

    // Link first, then the server.
    let newer = standin.rotate(INSTANCE, INTERNATIONAL);
    let resp = client
        .post(format!("{base}/server?instance={INSTANCE}&to=link"))
        .send()
        .await
        .expect("switch");
    assert_eq!(resp.status(), 200);
    assert_eq!(standin.server_ca_pem(INSTANCE), newer);

    for bad in [
        format!("{base}/server?instance={INSTANCE}&to=sideways"),
        format!("{base}/server?instance=nope&to=link"),
        format!("{base}/link?instance={INSTANCE}&to=link"),
        format!("{base}/server?instance={INSTANCE}"),
    ] {
        let resp = client.post(&bad).send().await.expect("bad request");
        assert_eq!(resp.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn following_a_link_that_serves_foreign_bytes_is_refused() {
    let (standin, client) = setup();
    standin.set_cert_pem(
        INSTANCE,
        INTERNATIONAL,
        dds_standin::expired_cert_pem().as_bytes(),
    );
    let resp = client
        .post(format!(
            "{}/__standin/server?instance={INSTANCE}&to=link",
            standin.api_url()
        ))
        .send()
        .await
        .expect("switch");
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.expect("body");
    assert!(text.contains("did not mint"), "{text}");
}
