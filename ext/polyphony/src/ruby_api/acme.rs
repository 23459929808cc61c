//! `Polyphony::ACME`: certificate orders over `polyphony-acme`, each run on a thread of its
//! own (the protocol is a string of blocking HTTPS requests and waits). The thread never
//! touches Ruby: it writes a byte to a pipe for each log line and closes the pipe when done,
//! so a fiber waits for an order like for any IO. Challenge responses go where every worker
//! process finds them: HTTP-01 key authorizations as files named by their token, TLS-ALPN-01
//! digests as files named by the host (and straight into this process's certificate store).

use std::fs;
use std::io::Write as _;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use magnus::value::{Lazy, ReprValue};
use magnus::{
    function, method, prelude::*, Error, ExceptionClass, RArray, RHash, RModule, Ruby, Value,
};
use polyphony_acme::{
    Challenge, ChallengeResponse, ErrorKind, Hooks, HttpRequest, HttpResponse, OrderRequest,
    Transport,
};
use polyphony_tls::CertStore;

use super::resp::Target;

static ERROR: Lazy<ExceptionClass> =
    Lazy::new(|ruby| crate::helpers::consts::polyphony_const(ruby, "ACME", "Error"));
static REFUSED: Lazy<ExceptionClass> =
    Lazy::new(|ruby| crate::helpers::consts::polyphony_const(ruby, "ACME", "Refused"));
static CONFIG_ERROR: Lazy<ExceptionClass> =
    Lazy::new(|ruby| crate::helpers::consts::polyphony_const(ruby, "ACME", "ConfigError"));

fn acme_error(message: impl Into<String>) -> Error {
    let ruby = Ruby::get().expect("called from Ruby");
    Error::new(ruby.get_inner(&ERROR), message.into())
}

/// The exception for a failed order: Polyphony::ACME::Refused (the CA will not issue for the
/// name), ConfigError (the configuration must change), or Error (it may pass).
fn order_error(error: polyphony_acme::Error) -> Error {
    let ruby = Ruby::get().expect("called from Ruby");
    let class = match error.kind {
        ErrorKind::Passing => ruby.get_inner(&ERROR),
        ErrorKind::Refused => ruby.get_inner(&REFUSED),
        ErrorKind::Configuration => ruby.get_inner(&CONFIG_ERROR),
    };
    Error::new(class, error.message)
}

fn config_error(message: impl Into<String>) -> Error {
    let ruby = Ruby::get().expect("called from Ruby");
    Error::new(ruby.get_inner(&CONFIG_ERROR), message.into())
}

/// What an order's thread ends with: a certificate, or (for `register`) an account.
#[derive(Clone)]
enum Outcome {
    Issued(polyphony_acme::Issued),
    Registered(String),
}

/// HTTPS with ureq, trusting the CA bundle given (a local Pebble's root) or the system's.
struct Https {
    agent: ureq::Agent,
}

impl Https {
    fn new(roots_pem: &[u8]) -> Result<Self, String> {
        let roots: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(roots_pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
                _ => None,
            })
            .collect();
        if roots.is_empty() {
            return Err("no CA certificate in the ACME server's CA bundle".into());
        }
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .new_agent();
        Ok(Self { agent })
    }
}

impl Transport for Https {
    fn send(&self, request: HttpRequest) -> Result<HttpResponse, String> {
        let mut builder = http_request(&request.method, &request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let request = builder.body(request.body).map_err(|e| e.to_string())?;
        let response = self.agent.run(request).map_err(|e| {
            let message = e.to_string();
            if message.contains("UnknownIssuer") {
                format!("{message} (the ACME server's certificate is signed by no CA in the bundle trusted)")
            } else {
                message
            }
        })?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .into_body()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| e.to_string())?;
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

fn http_request(method: &str, url: &str) -> ureq::http::request::Builder {
    ureq::http::Request::builder().method(method).uri(url)
}

/// Where challenge responses go, and the order's log.
struct Responder {
    dir: PathBuf,
    /// Redis, for a fleet sharing a store: responses go there (under the prefix), not to `dir`.
    redis: Option<(Target, String)>,
    store: Option<Arc<CertStore>>,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    messages: Mutex<Vec<String>>,
    result: Mutex<Option<Result<Outcome, polyphony_acme::Error>>>,
    /// The pipe's writing end: a byte per message; dropped (closed) when the order ends.
    notify: Mutex<Option<OwnedFd>>,
}

impl Shared {
    fn say(&self, message: String) {
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(message);
        if let Some(fd) = self
            .notify
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            // SAFETY: `fd` is the open writing end of the pipe this job owns.
            unsafe { libc::write(fd.as_raw_fd(), b"m".as_ptr().cast(), 1) };
        }
    }
}

/// A file written whole or not at all (readers in other processes never see half of it).
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::File::create(&tmp)?.write_all(data)?;
    fs::rename(tmp, path)
}

fn alpn_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{}.tls-alpn-01", name.to_ascii_lowercase()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Responder {
    /// Puts the response in Redis for every server (they expire in 10 minutes, in case this
    /// process dies before it removes them).
    fn install_in_redis(
        &self,
        (target, prefix): &(Target, String),
        response: &ChallengeResponse,
    ) -> Result<(), String> {
        let (key, value) = match response.challenge {
            Challenge::Http01 => (
                format!("{prefix}http:{}", response.token),
                response.key_authorization.clone(),
            ),
            Challenge::TlsAlpn01 => (
                format!("{prefix}alpn:{}", response.name.to_ascii_lowercase()),
                hex(&response.digest),
            ),
        };
        target
            .call(&[b"SET", key.as_bytes(), value.as_bytes(), b"EX", b"600"])
            .map(drop)
            .map_err(|e| format!("cannot put the challenge response in the store: {e}"))
    }
}

impl Hooks for Responder {
    fn install(&self, response: &ChallengeResponse) -> Result<(), String> {
        if let Some(redis) = &self.redis {
            if response.challenge == Challenge::TlsAlpn01 {
                if let Some(store) = &self.store {
                    let key = polyphony_tls::alpn_challenge_key(&response.name, &response.digest)
                        .map_err(|e| e.to_string())?;
                    store.set_challenge(&response.name, Some(Arc::new(key)));
                }
            }
            self.install_in_redis(redis, response)?;
            self.shared.say(format!(
                "serving the {} challenge for {} (through the store)",
                response.challenge.name(),
                response.name
            ));
            return Ok(());
        }
        let written = match response.challenge {
            Challenge::Http01 => write_atomically(
                &self.dir.join(&response.token),
                response.key_authorization.as_bytes(),
            ),
            Challenge::TlsAlpn01 => {
                if let Some(store) = &self.store {
                    let key = polyphony_tls::alpn_challenge_key(&response.name, &response.digest)
                        .map_err(|e| e.to_string())?;
                    store.set_challenge(&response.name, Some(Arc::new(key)));
                }
                write_atomically(
                    &alpn_file(&self.dir, &response.name),
                    hex(&response.digest).as_bytes(),
                )
            }
        };
        written.map_err(|e| {
            format!(
                "cannot write the challenge response in {}: {e}",
                self.dir.display()
            )
        })?;
        self.shared.say(format!(
            "serving the {} challenge for {}",
            response.challenge.name(),
            response.name
        ));
        Ok(())
    }

    fn remove(&self, response: &ChallengeResponse) {
        if let Some((target, prefix)) = &self.redis {
            let key = match response.challenge {
                Challenge::Http01 => format!("{prefix}http:{}", response.token),
                Challenge::TlsAlpn01 => {
                    if let Some(store) = &self.store {
                        store.set_challenge(&response.name, None);
                    }
                    format!("{prefix}alpn:{}", response.name.to_ascii_lowercase())
                }
            };
            let _ = target.call(&[b"DEL", key.as_bytes()]);
            return;
        }
        match response.challenge {
            Challenge::Http01 => {
                let _ = fs::remove_file(self.dir.join(&response.token));
            }
            Challenge::TlsAlpn01 => {
                if let Some(store) = &self.store {
                    store.set_challenge(&response.name, None);
                }
                let _ = fs::remove_file(alpn_file(&self.dir, &response.name));
            }
        }
    }

    fn log(&self, message: &str) {
        self.shared.say(message.to_string());
    }
}

/// The TLS-ALPN-01 certificate for `name` from the challenge directory, if an order (in any
/// process) is being validated for it.
pub(crate) fn alpn_challenge_from_dir(
    dir: &Path,
    name: &str,
) -> Option<Arc<polyphony_tls::CertifiedKey>> {
    let digest = unhex(&fs::read_to_string(alpn_file(dir, name)).ok()?)?;
    polyphony_tls::alpn_challenge_key(name, &digest)
        .ok()
        .map(Arc::new)
}

/// The TLS-ALPN-01 certificate for `name` from Redis, if an order of any server sharing the
/// store is being validated for it. (A blocking call, in a handshake: only validators ask.)
fn alpn_challenge_from_redis(
    target: &Target,
    prefix: &str,
    name: &str,
) -> Option<Arc<polyphony_tls::CertifiedKey>> {
    let key = format!("{prefix}alpn:{}", name.to_ascii_lowercase());
    let value = target.call(&[b"GET", key.as_bytes()]).ok()??;
    let digest = unhex(std::str::from_utf8(&value).ok()?)?;
    polyphony_tls::alpn_challenge_key(name, &digest)
        .ok()
        .map(Arc::new)
}

/// `Polyphony::ACME::Order`: an order running on its thread.
#[magnus::wrap(class = "Polyphony::ACME::Order", free_immediately, size)]
struct Order {
    shared: Arc<Shared>,
    /// The pipe's reading end: readable at each message, at its end when the order is done.
    events: OwnedFd,
}

fn string(hash: RHash, key: &str) -> Result<Option<String>, Error> {
    hash.lookup::<_, Option<String>>(key)
}

fn required(hash: RHash, key: &str) -> Result<String, Error> {
    string(hash, key)?.ok_or_else(|| acme_error(format!("the order needs :{key}")))
}

/// `Polyphony::ACME::Order.start(options, store)`: starts the order and returns at once.
/// Options (a Hash with String keys): directory, ca (PEM), account (saved JSON), contact
/// (Array), names (Array), challenge ("http-01" | "tls-alpn-01"), challenge_dir, eab_kid,
/// eab_hmac (bytes), attempts, timeout (s); with `register` true, only an account is made
/// (names, challenge and challenge_dir are not needed).
fn start(options: RHash, context: Value) -> Result<Order, Error> {
    let register = options
        .lookup::<_, Option<bool>>("register")?
        .unwrap_or(false);
    let names: Vec<String> = options
        .lookup::<_, Option<RArray>>("names")?
        .map(|a| a.to_vec())
        .transpose()?
        .unwrap_or_default();
    if names.is_empty() && !register {
        return Err(acme_error("the order names no host"));
    }
    let challenge = match string(options, "challenge")?
        .unwrap_or_else(|| "http-01".into())
        .as_str()
    {
        "http-01" => Challenge::Http01,
        "tls-alpn-01" => Challenge::TlsAlpn01,
        other => {
            return Err(acme_error(format!(
                "unknown challenge {other:?} (http-01 or tls-alpn-01)"
            )))
        }
    };
    let hmac: Option<magnus::RString> = options.lookup("eab_hmac")?;
    let eab = match (string(options, "eab_kid")?, hmac) {
        // SAFETY: the key's bytes (binary, not text) are copied at once.
        (Some(kid), Some(hmac)) => Some((kid, unsafe { hmac.as_slice() }.to_vec())),
        _ => None,
    };
    let request = OrderRequest {
        directory_url: required(options, "directory")?,
        account: string(options, "account")?,
        contact: options
            .lookup::<_, Option<RArray>>("contact")?
            .map(|a| a.to_vec())
            .transpose()?
            .unwrap_or_default(),
        eab,
        names,
        challenge,
        attempts: options.lookup::<_, Option<u32>>("attempts")?.unwrap_or(5),
        poll_interval: Duration::from_millis(250),
        timeout: Duration::from_secs_f64(
            options
                .lookup::<_, Option<f64>>("timeout")?
                .unwrap_or(120.0),
        ),
    };
    let roots = match string(options, "ca")? {
        Some(pem) => pem.into_bytes(),
        None => fs::read("/etc/ssl/certs/ca-certificates.crt")
            .map_err(|e| config_error(format!("cannot read the system CA bundle: {e}")))?,
    };
    let transport = Https::new(&roots).map_err(config_error)?;
    let store = super::tls::store_of(context)?;

    let (read, write) = pipe().map_err(|e| acme_error(format!("pipe: {e}")))?;
    let shared = Arc::new(Shared {
        notify: Mutex::new(Some(write)),
        ..Shared::default()
    });
    let redis = match string(options, "challenge_store")? {
        Some(url) => Some((
            Target::parse(&url).map_err(config_error)?,
            string(options, "challenge_prefix")?.unwrap_or_default(),
        )),
        None => None,
    };
    let responder = Responder {
        redis,
        dir: PathBuf::from(string(options, "challenge_dir")?.unwrap_or_default()),
        store,
        shared: shared.clone(),
    };
    std::thread::Builder::new()
        .name("acme".into())
        .spawn(move || {
            let transport = Arc::new(transport);
            let result = if register {
                polyphony_acme::register(transport, &request, &responder).map(Outcome::Registered)
            } else {
                polyphony_acme::obtain(transport, &request, &responder).map(Outcome::Issued)
            };
            *responder
                .shared
                .result
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(result);
            // Closing the pipe tells the waiting fiber the order is over.
            responder
                .shared
                .notify
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
        })
        .map_err(|e| acme_error(format!("cannot start the order's thread: {e}")))?;
    Ok(Order {
        shared,
        events: read,
    })
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded: both descriptors are open and ours.
    Ok(unsafe {
        (
            std::os::fd::FromRawFd::from_raw_fd(fds[0]),
            std::os::fd::FromRawFd::from_raw_fd(fds[1]),
        )
    })
}

impl Order {
    /// The descriptor to wait on: readable at each message, at its end when the order is done.
    fn fileno(&self) -> i32 {
        self.events.as_raw_fd()
    }

    /// The log lines since the last call.
    fn messages(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .shared
                .messages
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// nil while running; then { "chain" =>, "key" =>, "account" => }, or raises
    /// Polyphony::ACME::Error (its message says why; `retryable` in the message's wording).
    fn result(ruby: &Ruby, rb_self: &Self) -> Result<Value, Error> {
        let result = rb_self
            .shared
            .result
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match result {
            None => Ok(ruby.qnil().as_value()),
            Some(Ok(Outcome::Issued(issued))) => {
                let hash = ruby.hash_new();
                hash.aset("chain", issued.chain_pem)?;
                hash.aset("key", issued.key_pem)?;
                hash.aset("account", issued.account)?;
                Ok(hash.as_value())
            }
            Some(Ok(Outcome::Registered(account))) => {
                let hash = ruby.hash_new();
                hash.aset("account", account)?;
                Ok(hash.as_value())
            }
            Some(Err(e)) => Err(order_error(e)),
        }
    }
}

/// `Polyphony::TLS::ServerContext#challenge_dir=`: where TLS-ALPN-01 responses of orders run
/// by any process are found (see `alpn_challenge_from_dir`). Defined here, over the context's
/// certificate store, so that the TLS binding knows nothing of ACME.
fn set_challenge_dir(context: Value, dir: String) -> Result<(), Error> {
    let Some(store) = super::tls::store_of(context)? else {
        return Ok(());
    };
    let dir = PathBuf::from(dir);
    store.set_challenge_loader(Some(Box::new(move |name| {
        alpn_challenge_from_dir(&dir, name)
    })));
    Ok(())
}

/// `Polyphony::TLS::ServerContext#challenge_store(url, prefix)`: TLS-ALPN-01 responses of
/// orders run by any server sharing the Redis store at `url` are found there.
fn set_challenge_store(context: Value, url: String, prefix: String) -> Result<(), Error> {
    let Some(store) = super::tls::store_of(context)? else {
        return Ok(());
    };
    let target = Target::parse(&url).map_err(config_error)?;
    store.set_challenge_loader(Some(Box::new(move |name| {
        alpn_challenge_from_redis(&target, &prefix, name)
    })));
    Ok(())
}

pub(crate) fn init(ruby: &Ruby, polyphony: RModule) -> Result<(), Error> {
    let context: magnus::RClass =
        crate::helpers::consts::polyphony_const(ruby, "TLS", "ServerContext");
    context.define_method("challenge_dir=", method!(set_challenge_dir, 1))?;
    context.define_method("challenge_store", method!(set_challenge_store, 2))?;
    let acme = polyphony.define_module("ACME")?;
    let error = acme.define_error("Error", ruby.exception_standard_error())?;
    acme.define_error("Refused", error)?;
    acme.define_error("ConfigError", error)?;
    let class = acme.define_class("Order", ruby.class_object())?;
    class.define_singleton_method("start", function!(start, 2))?;
    class.define_method("fileno", method!(Order::fileno, 0))?;
    class.define_method("messages", method!(Order::messages, 0))?;
    class.define_method("result", method!(Order::result, 0))?;
    Ok(())
}
