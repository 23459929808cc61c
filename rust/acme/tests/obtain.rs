//! The order flow's failure handling, over a transport that fails as networks and CAs do.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use polyphony_acme::{
    obtain, Challenge, ChallengeResponse, Hooks, HttpRequest, HttpResponse, OrderRequest, Transport,
};

struct Refused(AtomicUsize);

impl Transport for Refused {
    fn send(&self, _request: HttpRequest) -> Result<HttpResponse, String> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Err("connection refused".into())
    }
}

/// The directory answers; everything after it is refused as rate limited.
struct RateLimited;

impl Transport for RateLimited {
    fn send(&self, request: HttpRequest) -> Result<HttpResponse, String> {
        if request.url.ends_with("/dir") {
            let directory = r#"{"newNonce":"https://ca.test/nonce","newAccount":"https://ca.test/account","newOrder":"https://ca.test/order"}"#;
            return Ok(HttpResponse {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: directory.into(),
            });
        }
        if request.url.ends_with("/nonce") {
            return Ok(HttpResponse {
                status: 200,
                headers: vec![("replay-nonce".into(), "abc".into())],
                body: vec![],
            });
        }
        let problem = r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many new accounts","status":429}"#;
        Ok(HttpResponse {
            status: 429,
            headers: vec![("content-type".into(), "application/problem+json".into())],
            body: problem.into(),
        })
    }
}

#[derive(Default)]
struct Recorder {
    log: RefCell<Vec<String>>,
    sleeps: RefCell<Vec<Duration>>,
}

impl Hooks for Recorder {
    fn install(&self, _response: &ChallengeResponse) -> Result<(), String> {
        Ok(())
    }
    fn remove(&self, _response: &ChallengeResponse) {}
    fn log(&self, message: &str) {
        self.log.borrow_mut().push(message.to_string());
    }
    fn sleep(&self, duration: Duration) {
        self.sleeps.borrow_mut().push(duration);
    }
}

fn request(attempts: u32) -> OrderRequest {
    OrderRequest {
        directory_url: "https://ca.test/dir".into(),
        account: None,
        contact: vec![],
        eab: None,
        names: vec!["a.test".into()],
        challenge: Challenge::Http01,
        attempts,
        poll_interval: Duration::from_millis(1),
        timeout: Duration::from_secs(1),
    }
}

#[test]
fn an_unreachable_ca_is_retried_with_growing_pauses_then_reported() {
    let transport = Arc::new(Refused(AtomicUsize::new(0)));
    let hooks = Recorder::default();
    let error = obtain(transport.clone(), &request(3), &hooks).unwrap_err();
    assert_eq!(
        error.message,
        "cannot reach the ACME server: connection refused"
    );
    assert!(error.retryable);
    assert_eq!(transport.0.load(Ordering::Relaxed), 3);
    assert_eq!(
        *hooks.sleeps.borrow(),
        [Duration::from_secs(1), Duration::from_secs(2)]
    );
    assert_eq!(hooks.log.borrow().len(), 2);
    assert!(
        hooks.log.borrow()[0].starts_with("attempt 1 of 3 failed (cannot reach the ACME server")
    );
}

#[test]
fn a_rate_limit_is_retryable_and_says_what_the_ca_said() {
    let hooks = Recorder::default();
    let error = obtain(Arc::new(RateLimited), &request(2), &hooks).unwrap_err();
    assert!(error.retryable, "{error}");
    assert!(error.message.contains("too many new accounts"), "{error}");
    assert_eq!(hooks.sleeps.borrow().len(), 1);
}

#[test]
fn a_bad_saved_account_is_not_retried() {
    let hooks = Recorder::default();
    let mut request = request(5);
    request.account = Some("{not json".into());
    let error = obtain(Arc::new(RateLimited), &request, &hooks).unwrap_err();
    assert!(!error.retryable);
    assert!(
        error.message.starts_with("unreadable saved ACME account"),
        "{error}"
    );
    assert!(hooks.sleeps.borrow().is_empty());
}

fn json_headers() -> Vec<(String, String)> {
    vec![
        ("replay-nonce".to_string(), "n".to_string()),
        ("content-type".to_string(), "application/json".to_string()),
    ]
}

fn reply(
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
) -> Result<HttpResponse, String> {
    Ok(HttpResponse {
        status,
        headers,
        body: body.into(),
    })
}

/// A mock CA's answers before any order (the directory, a nonce, a new account); other paths
/// are unexpected.
fn before_orders(path: &str, mut headers: Vec<(String, String)>) -> Result<HttpResponse, String> {
    match path {
        "/dir" => reply(
            200,
            headers,
            r#"{"newNonce":"https://ca.test/nonce","newAccount":"https://ca.test/account","newOrder":"https://ca.test/order"}"#.to_string(),
        ),
        "/nonce" => reply(200, headers, String::new()),
        "/account" => {
            headers.push(("location".into(), "https://ca.test/acct/1".into()));
            reply(201, headers, r#"{"status":"valid"}"#.to_string())
        }
        other => Err(format!("unexpected request for {other}")),
    }
}

/// A CA whose validator cannot reach the name: it answers the challenge's `ready` with the
/// validation already failed (`at_once`), or with the challenge still processing, the failure
/// showing on the next look at the order.
struct Unreachable {
    at_once: bool,
    failed: AtomicBool,
}

impl Unreachable {
    fn challenge(&self) -> String {
        let failed = self.failed.load(Ordering::Relaxed);
        format!(
            r#"{{"type":"http-01","url":"https://ca.test/chall/1","token":"tok","status":"{}"{}}}"#,
            if failed { "invalid" } else { "pending" },
            if failed {
                r#","error":{"type":"urn:ietf:params:acme:error:connection","detail":"127.0.0.1: Connection refused"}"#
            } else {
                ""
            }
        )
    }

    fn status(&self) -> &'static str {
        if self.failed.load(Ordering::Relaxed) {
            "invalid"
        } else {
            "pending"
        }
    }
}

impl Transport for Unreachable {
    fn send(&self, request: HttpRequest) -> Result<HttpResponse, String> {
        let path = request.url.trim_start_matches("https://ca.test");
        let mut headers = json_headers();
        let (status, body) = match path {
            "/order" | "/order/1" => {
                headers.push(("location".into(), "https://ca.test/order/1".into()));
                let status = if path == "/order" { 201 } else { 200 };
                (
                    status,
                    format!(
                        r#"{{"status":"{}","authorizations":["https://ca.test/authz/1"],"finalize":"https://ca.test/finalize/1"}}"#,
                        self.status()
                    ),
                )
            }
            "/authz/1" => (
                200,
                format!(
                    r#"{{"identifier":{{"type":"dns","value":"a.test"}},"status":"{}","challenges":[{}]}}"#,
                    self.status(),
                    self.challenge()
                ),
            ),
            "/chall/1" => {
                if self.at_once {
                    self.failed.store(true, Ordering::Relaxed);
                    (200, self.challenge())
                } else {
                    let processing = self.challenge().replace("pending", "processing");
                    self.failed.store(true, Ordering::Relaxed);
                    (200, processing)
                }
            }
            other => return before_orders(other, headers),
        };
        reply(status, headers, body)
    }
}

#[test]
fn a_failed_validation_says_why_whether_the_ca_answers_ready_with_it_or_later() {
    for at_once in [true, false] {
        let hooks = Recorder::default();
        let transport = Arc::new(Unreachable {
            at_once,
            failed: AtomicBool::new(false),
        });
        let error = obtain(transport, &request(3), &hooks).unwrap_err();
        assert_eq!(
            error.message, "validation failed: a.test: 127.0.0.1: Connection refused",
            "at once: {at_once}"
        );
        assert!(!error.retryable);
        assert!(hooks.sleeps.borrow().is_empty(), "{:?}", hooks.log.borrow());
    }
}

/// A CA that works, except that it rejects the first `rejections` POSTs to each URL as
/// badNonce (Pebble rejects a random share; this makes the worst case certain).
struct NonceRejecting {
    rejections: usize,
    posts: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    ready: std::sync::Mutex<Vec<String>>,
    finalized: AtomicBool,
}

impl NonceRejecting {
    fn new(rejections: usize) -> Self {
        Self {
            rejections,
            posts: Default::default(),
            ready: Default::default(),
            finalized: AtomicBool::new(false),
        }
    }

    fn rejected(&self, path: &str) -> usize {
        let posts = self.posts.lock().unwrap();
        posts.get(path).copied().unwrap_or(0).min(self.rejections)
    }

    fn order(&self) -> String {
        let status = if self.finalized.load(Ordering::Relaxed) {
            "valid"
        } else if self.ready.lock().unwrap().len() == 2 {
            "ready"
        } else {
            "pending"
        };
        format!(
            r#"{{"status":"{status}","authorizations":["https://ca.test/authz/1","https://ca.test/authz/2"],"finalize":"https://ca.test/finalize/1"{}}}"#,
            if status == "valid" {
                r#","certificate":"https://ca.test/cert/1""#
            } else {
                ""
            }
        )
    }
}

impl Transport for NonceRejecting {
    fn send(&self, request: HttpRequest) -> Result<HttpResponse, String> {
        let path = request
            .url
            .trim_start_matches("https://ca.test")
            .to_string();
        let mut headers = json_headers();
        if request.method == "POST" {
            let mut posts = self.posts.lock().unwrap();
            let count = posts.entry(path.clone()).or_insert(0);
            *count += 1;
            if *count <= self.rejections {
                let problem = r#"{"type":"urn:ietf:params:acme:error:badNonce","detail":"JWS has an invalid anti-replay nonce","status":400}"#;
                return Ok(HttpResponse {
                    status: 400,
                    headers,
                    body: problem.into(),
                });
            }
        }
        let (status, body) = match path.as_str() {
            "/order" | "/order/1" => {
                headers.push(("location".into(), "https://ca.test/order/1".into()));
                (if path == "/order" { 201 } else { 200 }, self.order())
            }
            "/authz/1" | "/authz/2" => {
                let n = &path[7..];
                (
                    200,
                    format!(
                        r#"{{"identifier":{{"type":"dns","value":"{n}.test"}},"status":"pending","challenges":[{{"type":"http-01","url":"https://ca.test/chall/{n}","token":"tok{n}","status":"pending"}}]}}"#
                    ),
                )
            }
            "/chall/1" | "/chall/2" => {
                let n = &path[7..];
                self.ready.lock().unwrap().push(n.to_string());
                (
                    200,
                    format!(
                        r#"{{"type":"http-01","url":"https://ca.test/chall/{n}","token":"tok{n}","status":"processing"}}"#
                    ),
                )
            }
            "/finalize/1" => {
                self.finalized.store(true, Ordering::Relaxed);
                (200, self.order())
            }
            "/cert/1" => {
                headers[1].1 = "application/pem-certificate-chain".into();
                (200, "-----BEGIN CERTIFICATE-----\n".to_string())
            }
            other => return before_orders(other, headers),
        };
        reply(status, headers, body)
    }
}

#[test]
fn each_step_is_sent_again_while_the_ca_rejects_its_nonce() {
    // Four rejections in a row: one more than instant-acme's own three tries.
    let transport = Arc::new(NonceRejecting::new(4));
    let hooks = Recorder::default();
    let mut request = request(1);
    request.names = vec!["1.test".into(), "2.test".into()];
    let issued = obtain(transport.clone(), &request, &hooks)
        .unwrap_or_else(|e| panic!("{e} (log: {:?})", hooks.log.borrow()));
    assert_eq!(issued.chain_pem, "-----BEGIN CERTIFICATE-----\n");
    for path in [
        "/account",
        "/order",
        "/authz/1",
        "/authz/2",
        "/chall/1",
        "/chall/2",
        "/order/1",
        "/finalize/1",
        "/cert/1",
    ] {
        assert_eq!(transport.rejected(path), 4, "{path}");
    }
    assert_eq!(*transport.ready.lock().unwrap(), ["1", "2"]);
    assert!(hooks.sleeps.borrow().is_empty(), "{:?}", hooks.log.borrow());
}
