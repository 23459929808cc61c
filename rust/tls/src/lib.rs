//! TLS for Polyphony, sans-IO: rustls sessions that the runtime feeds with the ciphertext it
//! reads and drains of the ciphertext to write (io_uring, epoll and C callers alike), and a
//! certificate store that picks a certificate by SNI and can change while a server runs.
//! The crypto provider is ring.

mod session;
mod store;

pub mod tickets;
use std::fmt;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

pub use rustls::sign::CertifiedKey;
pub use session::{Read, Session};
pub use store::{
    alpn_challenge_key, certificate_names, certified_key_from_pem, self_signed, CertStore,
};

/// The ALPN protocol of TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The handshake failed (a bad client hello, no common cipher suite, a certificate the
    /// client rejected, the peer went away ...).
    Handshake(String),
    /// The client asked for a host name (or none) that no certificate serves.
    UnknownServerName(Option<String>),
    /// A certificate or key that cannot be used.
    Certificate(String),
    /// The peer broke the protocol after the handshake.
    Protocol(String),
    /// A configuration that cannot work (bad ALPN names, an invalid server name).
    Config(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Handshake(m) => write!(f, "TLS handshake failed: {m}"),
            Error::UnknownServerName(Some(name)) => {
                write!(f, "TLS handshake failed: no certificate for {name:?}")
            }
            Error::UnknownServerName(None) => write!(
                f,
                "TLS handshake failed: the client sent no server name (SNI) and there is no default certificate"
            ),
            Error::Certificate(m) => write!(f, "bad certificate: {m}"),
            Error::Protocol(m) => write!(f, "TLS error: {m}"),
            Error::Config(m) => write!(f, "TLS configuration: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// What the first bytes of a connection say of the host it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientHello {
    /// More bytes are needed to see the whole ClientHello.
    Incomplete,
    /// The server name (SNI) the client asked for, if any.
    Complete(Option<String>),
    /// Not a TLS ClientHello.
    Invalid,
}

/// Reads the ClientHello in `bytes` (the start of a connection, peeked: nothing is consumed)
/// to learn the host name before a certificate is chosen (on-demand certificates).
pub fn peek_client_hello(bytes: &[u8]) -> ClientHello {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        match acceptor.read_tls(&mut rest) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => {
            ClientHello::Complete(accepted.client_hello().server_name().map(str::to_string))
        }
        Ok(None) => ClientHello::Incomplete,
        Err(_) => ClientHello::Invalid,
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn alpn_list(alpn: &[&str]) -> Vec<Vec<u8>> {
    alpn.iter().map(|p| p.as_bytes().to_vec()).collect()
}

/// A server configuration: certificates from `store`, ALPN protocols in the server's order
/// of preference (`acme-tls/1` is always accepted too, for validators), TLS 1.2 and 1.3.
pub fn server_config(store: Arc<CertStore>, alpn: &[&str]) -> Result<Arc<ServerConfig>, Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = alpn_list(alpn);
    config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    // Resumption, as browsers and nginx do it: a returning client skips the key exchange and
    // the signature. Tickets are stateless, and their keys the same in every process of the
    // server at any time (see `tickets`), so a client resumes on any worker; session ids are
    // kept too (per process).
    config.ticketer = Arc::new(tickets::SharedTicketer::new());
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    Ok(Arc::new(config))
}

/// A client configuration trusting the certificates in `roots_pem` (a CA bundle), offering
/// `alpn`.
pub fn client_config(roots_pem: &[u8], alpn: &[&str]) -> Result<Arc<ClientConfig>, Error> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(roots_pem) {
        let cert = cert.map_err(|e| Error::Certificate(format!("unreadable CA PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| Error::Certificate(format!("unusable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(Error::Certificate("no CA certificate in the CA PEM".into()));
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn_list(alpn);
    Ok(Arc::new(config))
}
