//! The order flow's failure handling, over a transport that fails as networks and CAs do.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
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
