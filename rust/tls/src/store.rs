//! The certificate store a server picks from by SNI. It can change while the server runs:
//! certificates added or replaced (an ACME renewal) serve the next handshake, with no restart.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::{Error, ACME_TLS_ALPN};

/// Finds the TLS-ALPN-01 certificate for a host name the store has none for (one that
/// another process is being validated for, say).
pub type ChallengeLoader = Box<dyn Fn(&str) -> Option<Arc<CertifiedKey>> + Send + Sync>;

/// Certificates by host name, a default for clients that name no host (or a host the store
/// does not know, when one is set), and TLS-ALPN-01 challenge certificates.
#[derive(Default)]
pub struct CertStore {
    inner: RwLock<Inner>,
    challenge_loader: RwLock<Option<ChallengeLoader>>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("inner", &self.inner)
            .finish()
    }
}

#[derive(Debug, Default)]
struct Inner {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    fallback: Option<Arc<CertifiedKey>>,
    challenges: HashMap<String, Arc<CertifiedKey>>,
}

impl CertStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) `key` for each of `names` (`*.example.com` serves one level of
    /// subdomains). Names are compared without regard to case.
    pub fn insert(&self, names: &[String], key: Arc<CertifiedKey>) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        for name in names {
            inner.by_name.insert(name.to_ascii_lowercase(), key.clone());
        }
    }

    /// The certificate for clients that send no SNI, or a name no certificate covers. Without
    /// one, such handshakes fail.
    pub fn set_fallback(&self, key: Option<Arc<CertifiedKey>>) {
        self.inner
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .fallback = key;
    }

    /// Serves `key` to a validator that connects for `name` offering only `acme-tls/1`
    /// (RFC 8737); `None` withdraws it.
    pub fn set_challenge(&self, name: &str, key: Option<Arc<CertifiedKey>>) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let name = name.to_ascii_lowercase();
        match key {
            Some(key) => inner.challenges.insert(name, key),
            None => inner.challenges.remove(&name),
        };
    }

    /// Asked for a validator's certificate when no [`CertStore::set_challenge`] gave one.
    pub fn set_challenge_loader(&self, loader: Option<ChallengeLoader>) {
        *self
            .challenge_loader
            .write()
            .unwrap_or_else(|e| e.into_inner()) = loader;
    }

    /// Whether a certificate covers `name` (exactly or by a wildcard).
    pub fn covers(&self, name: &str) -> bool {
        self.lookup(Some(name), false).is_some()
    }

    fn lookup(&self, name: Option<&str>, fallback: bool) -> Option<Arc<CertifiedKey>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let found = name.and_then(|name| {
            let name = name.to_ascii_lowercase();
            inner.by_name.get(&name).cloned().or_else(|| {
                let (_, parent) = name.split_once('.')?;
                inner.by_name.get(&format!("*.{parent}")).cloned()
            })
        });
        found.or_else(|| fallback.then(|| inner.fallback.clone()).flatten())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if acme {
            let name = hello.server_name()?.to_ascii_lowercase();
            let known = self
                .inner
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .challenges
                .get(&name)
                .cloned();
            return known.or_else(|| {
                let loader = self
                    .challenge_loader
                    .read()
                    .unwrap_or_else(|e| e.into_inner());
                loader.as_ref().and_then(|load| load(&name))
            });
        }
        self.lookup(hello.server_name(), true)
    }
}

/// A certificate chain and its private key, from PEM (the end-entity certificate first, as
/// servers and ACME hand them out). Fails, naming what is wrong, when either holds nothing
/// usable or the key does not belong to the certificate.
pub fn certified_key_from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, Error> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Certificate(format!("unreadable certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(Error::Certificate(
            "no CERTIFICATE block in the certificate PEM".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| Error::Certificate(format!("no usable private key in the key PEM: {e}")))?;
    let provider = rustls::crypto::ring::default_provider();
    let key = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
        Error::Certificate(match e {
            rustls::Error::InconsistentKeys(_) => {
                "the private key does not belong to the certificate".to_string()
            }
            e => format!("unusable certificate or key: {e}"),
        })
    })?;
    Ok(key)
}

/// The DNS names a certificate is valid for (its subject alternative names).
pub fn certificate_names(key: &CertifiedKey) -> Result<Vec<String>, Error> {
    let der = key
        .end_entity_cert()
        .map_err(|e| Error::Certificate(e.to_string()))?;
    let cert = webpki::EndEntityCert::try_from(der)
        .map_err(|e| Error::Certificate(format!("unparsable certificate: {e:?}")))?;
    Ok(cert.valid_dns_names().map(str::to_string).collect())
}

/// A new key and a self-signed certificate for `names` (PEM: certificate, key).
pub fn self_signed(names: &[String]) -> Result<(String, String), Error> {
    let params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| Error::Certificate(format!("bad name for a certificate: {e}")))?;
    let key = rcgen::KeyPair::generate().map_err(|e| Error::Certificate(e.to_string()))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| Error::Certificate(e.to_string()))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The self-signed certificate a TLS-ALPN-01 validator expects for `name` (RFC 8737): the
/// SHA-256 digest of the key authorization in a critical acmeIdentifier extension.
pub fn alpn_challenge_key(
    name: &str,
    key_authorization_digest: &[u8],
) -> Result<CertifiedKey, Error> {
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()])
        .map_err(|e| Error::Certificate(format!("bad name for a certificate: {e}")))?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(
        key_authorization_digest,
    )];
    let key = rcgen::KeyPair::generate().map_err(|e| Error::Certificate(e.to_string()))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| Error::Certificate(e.to_string()))?;
    // `from_der` refuses the critical extension; build the key by hand.
    let provider = rustls::crypto::ring::default_provider();
    let signer = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .map_err(|e| Error::Certificate(e.to_string()))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signer))
}
