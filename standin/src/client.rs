//! A blocking rustls client for the instance listener ([`crate::node`]), the
//! one the tests and the demo use to ask "does a driver reading this CA file
//! connect now?".

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// One TLS handshake to `addr` trusting exactly the certificates in `ca_pem`
/// (hostname checked: the listener's certificate names its IP address);
/// then `send`, when not empty, is written and the connection closed.
/// `timeout` bounds the connect and each read. `Err` says why it failed.
pub fn tls_handshake(
    addr: SocketAddr,
    ca_pem: &[u8],
    send: &[u8],
    timeout: Duration,
) -> Result<(), String> {
    let config = client_config(ca_pem)?;
    let name = ServerName::IpAddress(addr.ip().into());
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let mut tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    if !send.is_empty() {
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        tls.write_all(send).map_err(|e| e.to_string())?;
        tls.flush().map_err(|e| e.to_string())?;
    }
    conn.send_close_notify();
    let _ = conn.complete_io(&mut tcp);
    Ok(())
}

/// A client configuration trusting exactly the certificates in `ca_pem`.
pub fn client_config(ca_pem: &[u8]) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
