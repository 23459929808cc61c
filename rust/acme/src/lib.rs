//! ACME (RFC 8555) for Polyphony: an account, an order for one or more names, HTTP-01 or
//! TLS-ALPN-01 validation, the certificate. The protocol is instant-acme's; this crate drives
//! it with no async runtime and does no I/O of its own: HTTP goes through a [`Transport`] the
//! caller gives, challenge responses are served through [`Hooks`]. [`obtain`] blocks its
//! thread for as long as the order takes: run it on a background thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    ExternalAccountKey, HttpClient, Identifier, NewAccount, NewOrder, OrderStatus,
};
use pollster::block_on;

/// One HTTP request of the protocol (to the directory, nonce, account, order URLs).
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Sends a request over HTTPS and returns the whole response (blocking), or why it could not.
pub trait Transport: Send + Sync + 'static {
    fn send(&self, request: HttpRequest) -> Result<HttpResponse, String>;
}

/// How the server proves it controls a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// `GET http://NAME/.well-known/acme-challenge/TOKEN` answers the key authorization.
    Http01,
    /// A TLS handshake for NAME offering ALPN `acme-tls/1` gets a certificate carrying the
    /// digest of the key authorization (RFC 8737).
    TlsAlpn01,
}

impl Challenge {
    pub fn name(self) -> &'static str {
        match self {
            Challenge::Http01 => "http-01",
            Challenge::TlsAlpn01 => "tls-alpn-01",
        }
    }

    fn kind(self) -> ChallengeType {
        match self {
            Challenge::Http01 => ChallengeType::Http01,
            Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        }
    }
}

/// What the server must answer for one name while it is validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeResponse {
    pub challenge: Challenge,
    pub name: String,
    /// HTTP-01: the last segment of the path.
    pub token: String,
    /// HTTP-01: the response body.
    pub key_authorization: String,
    /// TLS-ALPN-01: the SHA-256 digest of the key authorization.
    pub digest: Vec<u8>,
}

/// What the caller does for an order: serve challenge responses, log, wait.
pub trait Hooks {
    /// Starts answering `response` (before the server is told to validate).
    fn install(&self, response: &ChallengeResponse) -> Result<(), String>;
    /// Stops answering it (the order is done, or failed).
    fn remove(&self, response: &ChallengeResponse);
    /// What an operator should read: ordering, validation, issuance, why it failed.
    fn log(&self, message: &str);
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// An order for a certificate.
#[derive(Debug, Clone)]
pub struct OrderRequest {
    /// The ACME directory (Let's Encrypt, ZeroSSL, a local Pebble...).
    pub directory_url: String,
    /// Saved account credentials (JSON from an earlier [`Issued::account`]); none: a new
    /// account is created, agreeing to the CA's terms of service.
    pub account: Option<String>,
    /// Contact URIs for a new account (`mailto:ops@example.com`).
    pub contact: Vec<String>,
    /// External account binding (ZeroSSL and others): key id and the base64url-decoded HMAC key.
    pub eab: Option<(String, Vec<u8>)>,
    pub names: Vec<String>,
    pub challenge: Challenge,
    /// Whole attempts made when a step fails for a passing reason (badNonce, rate limits, a
    /// network error), with 1, 2, 4 ... seconds between them.
    pub attempts: u32,
    /// How often the order is polled while the server validates and issues.
    pub poll_interval: Duration,
    /// How long validation and issuance may take.
    pub timeout: Duration,
}

/// A certificate obtained.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate, then its chain (PEM).
    pub chain_pem: String,
    /// Its new private key (PEM, PKCS#8).
    pub key_pem: String,
    /// The account's credentials (JSON, a secret): to save, so that the next order reuses
    /// the account.
    pub account: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub message: String,
    /// Whether the step may simply be sent again, now (badNonce, a rate limit, the network).
    pub retryable: bool,
    /// What the failure says about trying again later.
    pub kind: ErrorKind,
}

/// How long a failure should keep a name from being ordered again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// It may pass: a validation that failed, a CA or network hiccup (back off and retry).
    Passing,
    /// The CA refused the name for good (rejectedIdentifier, unsupportedIdentifier, caa).
    Refused,
    /// The configuration is wrong (the CA bundle, the directory URL): retrying cannot help
    /// until it is changed. The message says what to change.
    Configuration,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl Error {
    fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
            kind: ErrorKind::Passing,
        }
    }

    fn configuration(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
            kind: ErrorKind::Configuration,
        }
    }
}

/// Problem types (RFC 8555 6.7) by which a CA says it will not issue for the name at all.
const REFUSALS: &[&str] = &[":rejectedIdentifier", ":unsupportedIdentifier", ":caa"];

impl From<instant_acme::Error> for Error {
    fn from(error: instant_acme::Error) -> Self {
        match &error {
            instant_acme::Error::Api(problem) => {
                let kind = problem.r#type.as_deref().unwrap_or_default();
                Self {
                    message: format!("the ACME server refused: {problem}"),
                    retryable: kind.ends_with(":badNonce") || kind.ends_with(":rateLimited"),
                    kind: if REFUSALS.iter().any(|refusal| kind.ends_with(refusal)) {
                        ErrorKind::Refused
                    } else {
                        ErrorKind::Passing
                    },
                }
            }
            instant_acme::Error::Other(e) => {
                let text = e.to_string();
                if text.contains("certificate") {
                    // rustls refused the ACME server's certificate: the CA bundle given does
                    // not sign it (UnknownIssuer), or is that certificate itself
                    // (CaUsedAsEndEntity).
                    Self::configuration(format!(
                        "the ACME server's TLS certificate is not trusted ({text}): --acme-ca must \
                         hold the CA that signs the ACME server's own certificate (or leave it out \
                         for a public CA)"
                    ))
                } else {
                    Self {
                        message: format!("cannot reach the ACME server: {text}"),
                        retryable: true,
                        kind: ErrorKind::Passing,
                    }
                }
            }
            instant_acme::Error::Str(_)
            | instant_acme::Error::Json(_)
            | instant_acme::Error::Http(_) => Self::configuration(format!(
                "the ACME directory URL does not answer as an ACME server ({error}): check \
                     --acme-directory"
            )),
            e => Self::fatal(format!("ACME: {e}")),
        }
    }
}

/// How many times one step of the order is sent again when the CA answers badNonce, on top of
/// the three tries instant-acme makes itself. A CA checks the nonce before it does anything
/// else, so the step was not carried out and sending it again is safe. Pebble rejects a
/// share of good nonces on purpose (a third in our specs); with 3 tries a step still failed
/// 1 time in 27, and an order has a dozen steps, so whole attempts kept failing.
const NONCE_RETRIES: u32 = 5;

fn is_bad_nonce(error: &instant_acme::Error) -> bool {
    matches!(error, instant_acme::Error::Api(problem)
        if problem.r#type.as_deref().is_some_and(|kind| kind.ends_with(":badNonce")))
}

/// Runs one step of the protocol (an expression giving a future, evaluated again on each
/// try) to completion, sending it again while the CA answers badNonce.
macro_rules! step {
    ($future:expr) => {{
        let mut tries = 0;
        loop {
            match block_on($future) {
                Err(e) if is_bad_nonce(&e) && tries < NONCE_RETRIES => tries += 1,
                result => break result,
            }
        }
    }};
}

/// Creates an ACME account (agreeing to the CA's terms of service) and returns its credentials
/// (JSON, a secret: save them at once, so that every later order uses this account). Blocks.
pub fn register(
    transport: Arc<dyn Transport>,
    request: &OrderRequest,
    hooks: &dyn Hooks,
) -> Result<String, Error> {
    with_attempts(request, hooks, || {
        create_account(transport.clone(), request, hooks).map(|(_, json)| json)
    })
}

/// Runs `step` up to `request.attempts` times while it fails for a passing reason, with 1, 2,
/// 4 ... seconds between tries, each failure logged.
fn with_attempts<T>(
    request: &OrderRequest,
    hooks: &dyn Hooks,
    mut step: impl FnMut() -> Result<T, Error>,
) -> Result<T, Error> {
    let mut pause = Duration::from_secs(1);
    let mut attempt = 1;
    loop {
        match step() {
            Err(e) if e.retryable && attempt < request.attempts.max(1) => {
                hooks.log(&format!(
                    "attempt {attempt} of {} failed ({e}); again in {} s",
                    request.attempts,
                    pause.as_secs()
                ));
                hooks.sleep(pause);
                pause *= 2;
                attempt += 1;
            }
            result => return result,
        }
    }
}

fn create_account(
    transport: Arc<dyn Transport>,
    request: &OrderRequest,
    hooks: &dyn Hooks,
) -> Result<(Account, String), Error> {
    let builder = || Account::builder_with_http(Box::new(Client(transport.clone())));
    let contact: Vec<&str> = request.contact.iter().map(String::as_str).collect();
    let eab = request
        .eab
        .as_ref()
        .map(|(kid, key)| ExternalAccountKey::new(kid.clone(), key));
    let new = NewAccount {
        contact: &contact,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, credentials) =
        step!(builder().create(&new, request.directory_url.clone(), eab.as_ref()))?;
    hooks.log(&format!("created the ACME account {}", account.id()));
    let json = serde_json::to_string(&credentials)
        .map_err(|e| Error::fatal(format!("cannot save the ACME account: {e}")))?;
    Ok((account, json))
}

/// Obtains a certificate for `request.names`, retrying passing failures. Blocks. Without an
/// account in `request`, one is created first and used by every attempt (it comes back in
/// [`Issued::account`]; [`register`] makes one ahead, to be saved before any order).
pub fn obtain(
    transport: Arc<dyn Transport>,
    request: &OrderRequest,
    hooks: &dyn Hooks,
) -> Result<Issued, Error> {
    let mut request = request.clone();
    if request.account.is_none() {
        request.account = Some(register(transport.clone(), &request, hooks)?);
    }
    with_attempts(&request, hooks, || {
        obtain_once(transport.clone(), &request, hooks)
    })
}

fn obtain_once(
    transport: Arc<dyn Transport>,
    request: &OrderRequest,
    hooks: &dyn Hooks,
) -> Result<Issued, Error> {
    let builder = || Account::builder_with_http(Box::new(Client(transport.clone())));
    let (account, credentials) = match &request.account {
        Some(json) => {
            let credentials: AccountCredentials = serde_json::from_str(json).map_err(|e| {
                Error::configuration(format!(
                    "unreadable saved ACME account ({e}): remove the account file to have a new \
                     one made"
                ))
            })?;
            (
                block_on(builder().from_credentials(credentials))?,
                json.clone(),
            )
        }
        None => create_account(transport.clone(), request, hooks)?,
    };

    let identifiers: Vec<Identifier> = request
        .names
        .iter()
        .map(|name| Identifier::Dns(name.clone()))
        .collect();
    let mut order = step!(account.new_order(&NewOrder::new(&identifiers)))?;
    hooks.log(&format!(
        "ordering a certificate for {} ({})",
        request.names.join(", "),
        request.challenge.name()
    ));

    let mut installed = Vec::new();
    let result = validate(&mut order, request, hooks, &mut installed).and_then(|()| {
        let key_pem = step!(order.finalize())?;
        let started = Instant::now();
        loop {
            if let Some(chain_pem) = step!(order.certificate())? {
                return Ok(Issued {
                    chain_pem,
                    key_pem,
                    account: credentials.clone(),
                });
            }
            if started.elapsed() > request.timeout {
                return Err(Error::fatal(
                    "the ACME server did not issue the certificate in time",
                ));
            }
            hooks.sleep(request.poll_interval);
        }
    });
    for response in &installed {
        hooks.remove(response);
    }
    result
}

/// Serves each pending authorization's challenge and waits until the order is ready.
fn validate(
    order: &mut instant_acme::Order,
    request: &OrderRequest,
    hooks: &dyn Hooks,
    installed: &mut Vec<ChallengeResponse>,
) -> Result<(), Error> {
    fetch_authorizations(order)?;
    let mut authorizations = order.authorizations();
    while let Some(authorization) = block_on(authorizations.next()) {
        let mut authorization = authorization?;
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            status => {
                return Err(Error::fatal(format!(
                    "the authorization for {} is {status:?}",
                    authorization.identifier()
                )))
            }
        }
        let name = authorization.identifier().to_string();
        let mut challenge = authorization
            .challenge(request.challenge.kind())
            .ok_or_else(|| {
                Error::fatal(format!(
                    "the ACME server offers no {} challenge for {name}",
                    request.challenge.name()
                ))
            })?;
        let key_authorization = challenge.key_authorization();
        let response = ChallengeResponse {
            challenge: request.challenge,
            name,
            token: challenge.token.clone(),
            key_authorization: key_authorization.as_str().to_string(),
            digest: key_authorization.digest().as_ref().to_vec(),
        };
        hooks.install(&response).map_err(Error::fatal)?;
        installed.push(response);
        if let Err(e) = step!(challenge.set_ready()) {
            // A CA may validate before it answers (Pebble does when the validation fails
            // at once): the challenge then comes back with the validator's error, which is
            // told the same way as one found by polling.
            let e = Error::from(e);
            if !e.retryable && step!(order.refresh())?.status == OrderStatus::Invalid {
                return Err(Error::fatal(validation_failure(order)));
            }
            return Err(e);
        }
    }

    let started = Instant::now();
    loop {
        let state = step!(order.refresh())?;
        match state.status {
            OrderStatus::Ready | OrderStatus::Valid | OrderStatus::Processing => return Ok(()),
            OrderStatus::Invalid => return Err(Error::fatal(validation_failure(order))),
            OrderStatus::Pending if started.elapsed() > request.timeout => {
                return Err(Error::fatal(format!(
                    "the ACME server did not validate {} within {} s",
                    request.names.join(", "),
                    request.timeout.as_secs()
                )))
            }
            OrderStatus::Pending => hooks.sleep(request.poll_interval),
        }
    }
}

/// Fetches the state of each of the order's authorizations that is not known yet, trying again
/// on badNonce; afterwards, going through `order.authorizations()` sends nothing. (The stream
/// moves past an authorization whose fetch failed, so it cannot simply be asked again.)
fn fetch_authorizations(order: &mut instant_acme::Order) -> Result<(), instant_acme::Error> {
    let mut tries = 0;
    loop {
        let mut authorizations = order.authorizations();
        let failed = loop {
            match block_on(authorizations.next()) {
                None => break None,
                Some(Ok(_)) => {}
                Some(Err(e)) => break Some(e),
            }
        };
        match failed {
            None => return Ok(()),
            Some(e) if is_bad_nonce(&e) && tries < NONCE_RETRIES => tries += 1,
            Some(e) => return Err(e),
        }
    }
}

/// Why validation failed, from the challenges' errors (as the validator saw it).
fn validation_failure(order: &mut instant_acme::Order) -> String {
    let mut reasons = Vec::new();
    let _ = fetch_authorizations(order);
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = block_on(authorizations.next()) {
        let name = authorization.identifier().to_string();
        if let Ok(state) = step!(authorization.refresh()) {
            for challenge in &state.challenges {
                if let Some(problem) = &challenge.error {
                    reasons.push(format!(
                        "{name}: {}",
                        problem.detail.as_deref().unwrap_or("no detail")
                    ));
                }
            }
        }
    }
    if reasons.is_empty() {
        "the order became invalid".to_string()
    } else {
        format!("validation failed: {}", reasons.join("; "))
    }
}

/// instant-acme's HTTP client over a blocking [`Transport`].
struct Client(Arc<dyn Transport>);

type Response = Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>>;

impl HttpClient for Client {
    fn request(&self, request: http::Request<BodyWrapper<Bytes>>) -> Response {
        let transport = self.0.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes().to_vec(),
                Err(never) => match never {},
            };
            let request = HttpRequest {
                method: parts.method.to_string(),
                url: parts.uri.to_string(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect(),
                body,
            };
            let response = transport
                .send(request)
                .map_err(|e| instant_acme::Error::Other(e.into()))?;
            let mut builder = http::Response::builder().status(response.status);
            for (name, value) in &response.headers {
                builder = builder.header(name, value);
            }
            let response = builder.body(Full::new(Bytes::from(response.body)))?;
            Ok(BytesResponse::from(response))
        })
    }
}
