//! TLS for the server (feature `tls`): rustls with ALPN `h2` and
//! `http/1.1`, so browsers multiplex every stream of a page on one HTTP/2
//! connection.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// A connection after the handshake.
pub(crate) type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// A certificate chain and key, ready to accept TLS connections.
///
/// # Examples
///
/// ```no_run
/// use ssehub::server::TlsConfig;
///
/// let tls = TlsConfig::from_pem_files("cert.pem", "key.pem")?;
/// # Ok::<(), ssehub::server::TlsError>(())
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    acceptor: TlsAcceptor,
}

impl TlsConfig {
    /// From PEM text: the certificate chain (leaf first) and the private key
    /// (PKCS#8, PKCS#1 or SEC1).
    ///
    /// # Errors
    ///
    /// [`TlsError`] if either is missing or unusable.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        let certs = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(TlsError::Pem)?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(TlsError::Pem)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Rustls)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(TlsError::Rustls)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsConfig {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// From PEM files.
    ///
    /// # Errors
    ///
    /// [`TlsError::Read`] if a file cannot be read, else as
    /// [`TlsConfig::from_pem`].
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let read = |p: &Path| std::fs::read(p).map_err(|e| TlsError::Read(p.to_owned(), e));
        TlsConfig::from_pem(&read(cert_chain.as_ref())?, &read(key.as_ref())?)
    }

    /// The handshake, and whether the client chose HTTP/2 through ALPN.
    pub(crate) async fn accept(&self, tcp: TcpStream) -> io::Result<(TlsStream, bool)> {
        let stream = self.acceptor.accept(tcp).await?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok((stream, h2))
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsConfig { alpn: [h2, http/1.1] }")
    }
}

/// Why a TLS configuration could not be built. The cause, if any, is its
/// [`source`](std::error::Error::source).
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    Read(PathBuf, std::io::Error),
    /// The PEM text is malformed or holds no private key.
    Pem(rustls_pki_types::pem::Error),
    /// The certificate file holds no certificate.
    NoCertificate,
    /// rustls refused the certificate or key.
    Rustls(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read(p, _) => write!(f, "cannot read {}", p.display()),
            TlsError::Pem(_) => f.write_str("invalid PEM"),
            TlsError::NoCertificate => f.write_str("no certificate in the certificate file"),
            TlsError::Rustls(_) => f.write_str("unusable certificate or key"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Read(_, e) => Some(e),
            TlsError::Pem(e) => Some(e),
            TlsError::NoCertificate => None,
            TlsError::Rustls(e) => Some(e),
        }
    }
}
