//! Client and server sessions wired back to back in memory: handshakes, ALPN, SNI, hot-swap,
//! challenge certificates and the errors a server reports.

use std::sync::Arc;

use polyphony_tls::{
    alpn_challenge_key, certificate_names, certified_key_from_pem, client_config,
    peek_client_hello, self_signed, server_config, CertStore, ClientHello, Error, Read, Session,
};

struct Cert {
    pem: String,
    key: String,
}

fn cert(names: &[&str]) -> Cert {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let (pem, key) = self_signed(&names).unwrap();
    Cert { pem, key }
}

fn add(store: &CertStore, cert: &Cert) {
    let key = Arc::new(certified_key_from_pem(cert.pem.as_bytes(), cert.key.as_bytes()).unwrap());
    store.insert(&certificate_names(&key).unwrap(), key);
}

/// Moves ciphertext both ways until neither side has anything to say.
fn shuttle(client: &mut Session, server: &mut Session) -> Result<(), (Error, &'static str)> {
    for _ in 0..20 {
        let mut to_server = Vec::new();
        client.outgoing(&mut to_server);
        if !to_server.is_empty() {
            server.receive(&to_server).map_err(|e| (e, "server"))?;
        }
        let mut to_client = Vec::new();
        server.outgoing(&mut to_client);
        if !to_client.is_empty() {
            client.receive(&to_client).map_err(|e| (e, "client"))?;
        }
        if to_server.is_empty() && to_client.is_empty() {
            return Ok(());
        }
    }
    panic!("the sessions never settled");
}

fn pair(
    store: Arc<CertStore>,
    roots: &Cert,
    name: &str,
    server_alpn: &[&str],
    client_alpn: &[&str],
) -> (Session, Session) {
    let server = Session::server(server_config(store, server_alpn).unwrap()).unwrap();
    let client = Session::client(
        client_config(roots.pem.as_bytes(), client_alpn).unwrap(),
        name,
    )
    .unwrap();
    (client, server)
}

fn read_all(session: &mut Session) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Read::Data(n) = session.read(&mut buf).unwrap() {
        out.extend_from_slice(&buf[..n]);
    }
    out
}

#[test]
fn handshakes_and_carries_data_both_ways() {
    let store = Arc::new(CertStore::new());
    let localhost = cert(&["localhost"]);
    add(&store, &localhost);
    let (mut client, mut server) =
        pair(store, &localhost, "localhost", &["http/1.1"], &["http/1.1"]);
    client.write(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    shuttle(&mut client, &mut server).unwrap();
    assert!(!server.is_handshaking());
    assert_eq!(server.server_name(), Some("localhost"));
    assert_eq!(server.protocol_version().as_deref(), Some("TLSv1_3"));
    assert_eq!(read_all(&mut server), b"GET / HTTP/1.1\r\n\r\n");

    let big = vec![b'x'; 100_000];
    server.write(&big).unwrap();
    shuttle(&mut client, &mut server).unwrap();
    assert_eq!(read_all(&mut client).len(), 100_000);

    server.close();
    shuttle(&mut client, &mut server).unwrap();
    assert_eq!(client.read(&mut [0u8; 16]).unwrap(), Read::Eof);
}

#[test]
fn alpn_picks_the_servers_preference_among_the_clients_offers() {
    let store = Arc::new(CertStore::new());
    let localhost = cert(&["localhost"]);
    add(&store, &localhost);
    let (mut client, mut server) = pair(
        store.clone(),
        &localhost,
        "localhost",
        &["h2", "http/1.1"],
        &["http/1.1", "h2"],
    );
    shuttle(&mut client, &mut server).unwrap();
    assert_eq!(server.alpn_protocol(), Some(&b"h2"[..]));

    let (mut client, mut server) = pair(
        store,
        &localhost,
        "localhost",
        &["h2", "http/1.1"],
        &["http/1.1"],
    );
    shuttle(&mut client, &mut server).unwrap();
    assert_eq!(server.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[test]
fn sni_picks_the_certificate_and_wildcards_cover_one_level() {
    let store = Arc::new(CertStore::new());
    let a = cert(&["a.test"]);
    let b = cert(&["*.b.test"]);
    add(&store, &a);
    add(&store, &b);
    // Each client trusts only the certificate it should be shown.
    let (mut client, mut server) = pair(store.clone(), &a, "a.test", &[], &[]);
    shuttle(&mut client, &mut server).unwrap();
    let (mut client, mut server) = pair(store.clone(), &b, "www.b.test", &[], &[]);
    shuttle(&mut client, &mut server).unwrap();
    assert!(!client.is_handshaking());

    let (mut client, mut server) = pair(store.clone(), &a, "nope.test", &[], &[]);
    let (error, side) = shuttle(&mut client, &mut server).unwrap_err();
    assert_eq!(side, "server");
    assert_eq!(error, Error::UnknownServerName(Some("nope.test".into())));
    assert_eq!(
        error.to_string(),
        "TLS handshake failed: no certificate for \"nope.test\""
    );
    // The client is told why, by alert 112 unrecognized_name (RFC 6066), not access_denied.
    let mut alert = Vec::new();
    server.outgoing(&mut alert);
    assert_eq!(alert, [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112]);
    let refused = client.receive(&alert).unwrap_err();
    assert!(
        refused.to_string().contains("UnrecognisedName"),
        "{refused}"
    );

    // With a fallback, unknown names get it.
    let fallback = Arc::new(certified_key_from_pem(a.pem.as_bytes(), a.key.as_bytes()).unwrap());
    store.set_fallback(Some(fallback));
    let (mut client, mut server) = pair(store, &a, "a.test", &[], &[]);
    shuttle(&mut client, &mut server).unwrap();
}

#[test]
fn a_replaced_certificate_serves_the_next_handshake() {
    let store = Arc::new(CertStore::new());
    let old = cert(&["swap.test"]);
    let new = cert(&["swap.test"]);
    add(&store, &old);
    let (mut client, mut server) = pair(store.clone(), &old, "swap.test", &[], &[]);
    shuttle(&mut client, &mut server).unwrap();

    add(&store, &new);
    let (mut client, mut server) = pair(store.clone(), &new, "swap.test", &[], &[]);
    shuttle(&mut client, &mut server).unwrap();
    let (mut client, mut server) = pair(store, &old, "swap.test", &[], &[]);
    let (error, side) = shuttle(&mut client, &mut server).unwrap_err();
    assert_eq!(
        side, "client",
        "the old certificate is no longer shown: {error}"
    );
}

#[test]
fn the_challenge_certificate_goes_only_to_acme_validators() {
    let store = Arc::new(CertStore::new());
    let site = cert(&["acme.test"]);
    add(&store, &site);
    store.set_challenge(
        "acme.test",
        Some(Arc::new(
            alpn_challenge_key("acme.test", &[7u8; 32]).unwrap(),
        )),
    );
    // A browser still gets the site's certificate.
    let (mut client, mut server) = pair(
        store.clone(),
        &site,
        "acme.test",
        &["http/1.1"],
        &["http/1.1"],
    );
    shuttle(&mut client, &mut server).unwrap();
    // A validator offering acme-tls/1 gets the challenge certificate (which the site's root
    // does not sign), and the protocol is agreed.
    let (mut client, mut server) = pair(
        store.clone(),
        &site,
        "acme.test",
        &["http/1.1"],
        &["acme-tls/1"],
    );
    assert!(shuttle(&mut client, &mut server).is_err());
    assert_eq!(server.alpn_protocol(), Some(&b"acme-tls/1"[..]));
    store.set_challenge("acme.test", None);
    let (mut client, mut server) = pair(store, &site, "acme.test", &["http/1.1"], &["acme-tls/1"]);
    let (error, _) = shuttle(&mut client, &mut server).unwrap_err();
    assert!(matches!(error, Error::UnknownServerName(_)), "{error}");
}

#[test]
fn garbage_instead_of_a_client_hello_is_a_handshake_error() {
    let store = Arc::new(CertStore::new());
    add(&store, &cert(&["localhost"]));
    // Plain HTTP gets a plain HTTP answer it can show, as from nginx.
    let mut server = Session::server(server_config(store.clone(), &[]).unwrap()).unwrap();
    let error = server
        .receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "TLS handshake failed: a plain HTTP request came to the HTTPS port"
    );
    let mut answer = Vec::new();
    server.outgoing(&mut answer);
    let answer = String::from_utf8(answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    assert!(
        answer.contains(&format!("Content-Length: {}\r\n", body.len())),
        "{answer}"
    );
    // Other garbage is a handshake error, answered in TLS (if at all).
    let mut server = Session::server(server_config(store, &[]).unwrap()).unwrap();
    let error = server.receive(b"\x16\x03\x01\x00\x05hello").unwrap_err();
    assert!(matches!(error, Error::Handshake(_)), "{error}");
    let mut answer = Vec::new();
    server.outgoing(&mut answer);
    assert!(!answer.starts_with(b"HTTP/"));
    let mut server =
        Session::server(server_config(Arc::new(CertStore::new()), &[]).unwrap()).unwrap();
    assert_eq!(
        server.receive(b"").unwrap_err(),
        Error::Handshake("the peer closed the connection during the handshake".into())
    );
}

#[test]
fn unusable_pem_says_what_is_wrong() {
    let a = cert(&["a.test"]);
    let b = cert(&["b.test"]);
    let message = |chain: &str, key: &str| {
        certified_key_from_pem(chain.as_bytes(), key.as_bytes())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        message("", &a.key),
        "bad certificate: no CERTIFICATE block in the certificate PEM"
    );
    assert!(
        message(&a.pem, "").starts_with("bad certificate: no usable private key in the key PEM")
    );
    assert_eq!(
        message(&a.pem, &b.key),
        "bad certificate: the private key does not belong to the certificate"
    );
    assert!(client_config(b"", &[]).is_err());
}

#[test]
fn a_returning_client_resumes_its_session_on_any_session_of_the_configuration() {
    let store = Arc::new(CertStore::new());
    let localhost = cert(&["localhost"]);
    add(&store, &localhost);
    // One server configuration (as forked workers share it), one client configuration (its
    // session cache).
    let server_config = server_config(store, &[]).unwrap();
    let client_config = client_config(localhost.pem.as_bytes(), &[]).unwrap();
    let mut kinds = Vec::new();
    for _ in 0..3 {
        let mut server = Session::server(server_config.clone()).unwrap();
        let mut client = Session::client(client_config.clone(), "localhost").unwrap();
        client.write(b"x").unwrap();
        shuttle(&mut client, &mut server).unwrap();
        server.write(b"y").unwrap(); // the session ticket goes with the first data
        shuttle(&mut client, &mut server).unwrap();
        kinds.push(server.resumed());
    }
    assert_eq!(kinds, [false, true, true]);
}

#[test]
fn the_host_name_is_read_from_a_client_hello_before_any_certificate_is_chosen() {
    let roots = cert(&["x.test"]);
    let mut client = Session::client(
        client_config(roots.pem.as_bytes(), &[]).unwrap(),
        "on-demand.test",
    )
    .unwrap();
    let mut hello = Vec::new();
    client.outgoing(&mut hello);
    assert_eq!(
        peek_client_hello(&hello),
        ClientHello::Complete(Some("on-demand.test".into()))
    );
    assert_eq!(
        peek_client_hello(&hello[..hello.len() / 2]),
        ClientHello::Incomplete
    );
    assert_eq!(peek_client_hello(b""), ClientHello::Incomplete);
    assert_eq!(
        peek_client_hello(b"GET / HTTP/1.1\r\n\r\n"),
        ClientHello::Invalid
    );
}
