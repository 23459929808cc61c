//! A TLS server session fed arbitrary bytes in arbitrary pieces, and the ClientHello peek that
//! runs before a certificate is chosen: errors are fine, panics and hangs are not.

#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use polyphony_tls::{peek_client_hello, Read, Session};

fn config() -> Arc<rustls::ServerConfig> {
    static CONFIG: OnceLock<Arc<rustls::ServerConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let store = Arc::new(polyphony_tls::CertStore::new());
            let (cert, key) = polyphony_tls::self_signed(&["localhost".to_string()]).unwrap();
            let key = polyphony_tls::certified_key_from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
            store.set_fallback(Some(Arc::new(key)));
            polyphony_tls::server_config(store, &["h2", "http/1.1"]).unwrap()
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let _ = peek_client_hello(data);
    let mut session = Session::server(config()).unwrap();
    // The first byte picks the piece size: records split anywhere must not matter.
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut out = Vec::new();
    let mut plain = [0u8; 4096];
    for piece in data.chunks(step) {
        if session.receive(piece).is_err() {
            break;
        }
        session.outgoing(&mut out);
        while let Ok(Read::Data(_)) = session.read(&mut plain) {}
    }
    let _ = session.receive(b"");
});
