//! Start-up, TLS trust, keep-alive and shutdown.

use std::net::TcpStream;
use std::sync::Arc;

use dds_standin::StandIn;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

fn api_port(standin: &StandIn) -> u16 {
    standin
        .api_url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in api_url")
}

#[test]
fn urls_have_the_documented_shapes() {
    let standin = StandIn::start();
    let api = standin.api_url();
    assert!(
        api.starts_with("https://127.0.0.1:") && !api.ends_with('/'),
        "{api}"
    );
    let host = standin.download_host();
    assert!(host.starts_with("localhost:"), "{host}");
    assert_ne!(
        host.rsplit(':').next(),
        api.rsplit(':').next(),
        "separate listeners"
    );
    assert!(standin.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
}

#[test]
fn write_ca_writes_the_pem() {
    let standin = StandIn::start();
    let dir = std::env::temp_dir().join(format!("dds-standin-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("ca.pem");
    standin.write_ca(&path).expect("write");
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        standin.ca_pem()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn drop_closes_both_ports() {
    let standin = StandIn::start();
    let api = api_port(&standin);
    let download: u16 = standin
        .download_host()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    assert!(
        TcpStream::connect(("127.0.0.1", api)).is_ok(),
        "up while alive"
    );
    drop(standin);
    assert!(
        TcpStream::connect(("127.0.0.1", api)).is_err(),
        "API port closed"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", download)).is_err(),
        "download port closed"
    );
}

#[tokio::test]
async fn can_be_started_and_dropped_inside_a_runtime() {
    let standin = StandIn::start();
    standin.add_instance("p", "i");
    drop(standin);
}

#[tokio::test]
async fn a_client_without_the_ca_is_refused() {
    let standin = StandIn::start();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let other_ca =
        reqwest::Certificate::from_pem(StandIn::start().ca_pem().as_bytes()).expect("pem");
    let client = reqwest::Client::builder()
        .tls_certs_only([other_ca])
        .no_proxy()
        .build()
        .expect("client");
    let err = client
        .get(format!("{}/__standin/", standin.api_url()))
        .send()
        .await
        .expect_err("TLS must fail against a foreign CA");
    assert!(err.is_connect(), "{err:?}");
}

async fn read_response(stream: &mut (impl AsyncReadExt + Unpin)) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.expect("read head");
        assert_eq!(n, 1, "connection closed inside the head");
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse().ok())
        .expect("content-length");
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.expect("read body");
    (head, body)
}

#[tokio::test]
async fn keeps_connections_alive_over_tls() {
    let standin = StandIn::start();
    let (_, pem) = x509_parser::pem::parse_x509_pem(standin.ca_pem().as_bytes()).expect("pem");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(pem.contents)).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", api_port(&standin)))
        .await
        .expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the stand-in CA");
    for _ in 0..3 {
        tls.write_all(b"GET /__standin/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .expect("write");
        let (head, body) = read_response(&mut tls).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(String::from_utf8_lossy(&body).contains("/__standin/rotate"));
    }
    assert_eq!(standin.requests().len(), 3);
}
