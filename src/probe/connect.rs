//! The network half of a probe: a TCP connection and a TLS handshake that
//! takes note of the server's chain, then `close_notify` and nothing else.
//!
//! The handshake itself accepts whatever chain the server presents, so the
//! server sees an ordinary, complete handshake (no alert, no error in its
//! log); the chain is judged afterwards, against the file, by
//! [`super::verdict::judge`]. The server must still prove it holds the
//! certificate's key: the handshake signature is verified with the ring
//! provider's algorithms. No client certificate, no session resumption (every
//! probe sees a full handshake, hence a certificate), no ALPN, and not one
//! byte of application data.

use std::sync::{Arc, Mutex};

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::config::ProbeAddr;

type Chain = Vec<CertificateDer<'static>>;

/// Notes the presented chain and accepts it; checks handshake signatures.
#[derive(Debug)]
struct NoteChain {
    seen: Mutex<Option<Chain>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NoteChain {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(chain);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Connects to `addr`, completes a TLS handshake, closes, and returns the
/// chain the server presented (leaf first). The error says what failed. The
/// caller bounds the time.
pub async fn fetch_chain(addr: &ProbeAddr) -> Result<Chain, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(NoteChain {
        seen: Mutex::new(None),
        algorithms: provider.signature_verification_algorithms,
    });
    let config = client_config(Arc::clone(&provider), Arc::clone(&verifier) as _)?;
    let name = server_name(addr)?;
    let tcp = TcpStream::connect((addr.host.as_str(), addr.port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    // close_notify, then the socket closes: nothing else is ever written.
    let _ = tls.shutdown().await;
    let chain = verifier
        .seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    chain.ok_or_else(|| "the server presented no certificate".to_string())
}

fn client_config(
    provider: Arc<CryptoProvider>,
    verifier: Arc<dyn ServerCertVerifier>,
) -> Result<rustls::ClientConfig, String> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Ok(config)
}

/// The name the handshake carries: an IP address (no SNI), else the DNS
/// name as SNI. It is never checked against the certificate.
fn server_name(addr: &ProbeAddr) -> Result<ServerName<'static>, String> {
    if let Ok(ip) = addr.host.parse::<std::net::IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(addr.host.clone()).map_err(|e| format!("bad host name: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_hosts_send_no_name_dns_hosts_send_theirs() {
        let ip = ProbeAddr {
            host: "fd00::10".into(),
            port: 1,
        };
        assert!(matches!(server_name(&ip), Ok(ServerName::IpAddress(_))));
        let dns = ProbeAddr {
            host: "node1.example".into(),
            port: 1,
        };
        assert!(
            matches!(server_name(&dns), Ok(ServerName::DnsName(n)) if n.as_ref() == "node1.example")
        );
    }

    #[test]
    fn the_client_sends_no_certificate_no_alpn_no_early_data() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(NoteChain {
            seen: Mutex::new(None),
            algorithms: provider.signature_verification_algorithms,
        });
        let config = client_config(provider, verifier).expect("config");
        assert!(!config.client_auth_cert_resolver.has_certs());
        assert!(config.alpn_protocols.is_empty());
        assert!(!config.enable_early_data);
    }
}
