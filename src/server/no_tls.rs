//! TLS compiled out (the `tls` feature is off): the server speaks
//! cleartext HTTP/1.1 and h2c only, and `ServerConfig` has no `tls` field.
//!
//! `TlsConfig` has no values here, so the server's TLS branches fold away;
//! the accept loop reads the same with the feature on or off.

use std::io;

use tokio::net::TcpStream;

/// No TLS settings can exist without the `tls` feature.
#[derive(Debug, Clone)]
pub(crate) enum TlsConfig {}

/// What a handshake would give.
pub(crate) type TlsStream = TcpStream;

impl TlsConfig {
    pub(crate) async fn accept(&self, _: TcpStream) -> io::Result<(TlsStream, bool)> {
        match *self {}
    }
}
