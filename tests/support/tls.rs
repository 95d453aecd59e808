//! TLS for the tests: a self-signed certificate for `localhost` and a client
//! that trusts it and offers chosen ALPN protocols.

use std::net::SocketAddr;
use std::sync::Arc;

use ssehub::server::TlsConfig;
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// A server configuration with a fresh self-signed certificate, and the
/// roots a client needs to trust it.
pub fn test_tls() -> (TlsConfig, rustls::RootCertStore) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let tls = TlsConfig::from_pem(
        ck.cert.pem().as_bytes(),
        ck.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    (tls, roots)
}

/// Connects and completes a TLS handshake offering `alpn`.
pub async fn tls_connect(
    addr: SocketAddr,
    roots: rustls::RootCertStore,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.expect("TLS handshake")
}
