//! `H1P::Parser#parse_rack_env(base)`: the next request as a Rack env, built here in one go
//! (Tipi's hot path): no headers Hash in between, keys interned once.

use std::sync::OnceLock;

use h1p::names::{known, COOKIE, HOST};
use h1p::pull::Message;
use h1p::Version;
use magnus::rb_sys::AsRawValue;
use magnus::{prelude::*, Error, RHash, Ruby};
use rb_sys::VALUE;

use super::hash::{method_value, Values};
use super::names::frozen;

struct Keys {
    request_method: VALUE,
    path_info: VALUE,
    query_string: VALUE,
    server_protocol: VALUE,
    server_name: VALUE,
    server_port: VALUE,
    http10: VALUE,
    http11: VALUE,
    http1: VALUE,
    empty: VALUE,
    port80: VALUE,
    /// "HTTP_USER_AGENT" for "user-agent", for the known names (in `h1p::names::KNOWN`'s
    /// order); CONTENT_TYPE and CONTENT_LENGTH (no HTTP_ prefix) for theirs.
    http: Vec<VALUE>,
}

static KEYS: OnceLock<Keys> = OnceLock::new();

fn keys(ruby: &Ruby) -> &'static Keys {
    KEYS.get_or_init(|| Keys {
        request_method: frozen(ruby, "REQUEST_METHOD"),
        path_info: frozen(ruby, "PATH_INFO"),
        query_string: frozen(ruby, "QUERY_STRING"),
        server_protocol: frozen(ruby, "SERVER_PROTOCOL"),
        server_name: frozen(ruby, "SERVER_NAME"),
        server_port: frozen(ruby, "SERVER_PORT"),
        http10: frozen(ruby, "HTTP/1.0"),
        http11: frozen(ruby, "HTTP/1.1"),
        http1: frozen(ruby, "HTTP/1"),
        // Not through `frozen`: an empty &str's pointer is dangling, and Ruby reads it.
        empty: {
            let empty = ruby.str_new("");
            empty.freeze();
            // SAFETY: `empty` is a live String; registering keeps it forever.
            unsafe { rb_sys::rb_gc_register_mark_object(empty.as_raw()) };
            empty.as_raw()
        },
        port80: frozen(ruby, "80"),
        http: h1p::names::KNOWN
            .iter()
            .map(|&name| match name {
                "content-type" => frozen(ruby, "CONTENT_TYPE"),
                "content-length" => frozen(ruby, "CONTENT_LENGTH"),
                name => {
                    let key = env_key_bytes(name.as_bytes());
                    frozen(ruby, std::str::from_utf8(&key).unwrap_or_default())
                }
            })
            .collect(),
    })
}

/// "HTTP_" and the name upper-cased, '-' as '_'.
fn env_key_bytes(name: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 5);
    key.extend_from_slice(b"HTTP_");
    key.extend(name.iter().map(|&b| match b {
        b'-' => b'_',
        b => b.to_ascii_uppercase(),
    }));
    key
}

/// The env key of a header field (CONTENT_TYPE and CONTENT_LENGTH have no HTTP_ prefix), from
/// its position in `h1p::names::KNOWN` when it is a known one.
fn env_key(keys: &Keys, name: &[u8], common: Option<u8>) -> VALUE {
    if let Some(i) = common {
        return keys.http[usize::from(i)];
    }
    let key = env_key_bytes(name);
    // SAFETY: the GVL is held; `key` is valid for its length (ASCII: field names are tokens).
    unsafe {
        rb_sys::rb_enc_interned_str(
            key.as_ptr().cast(),
            key.len() as _,
            rb_sys::rb_utf8_encoding(),
        )
    }
}

const QNIL: VALUE = rb_sys::ruby_special_consts::RUBY_Qnil as VALUE;

/// Pairs per bulk insert (a request with more fields takes several).
const BATCH: usize = 64;

/// An env under construction: a copy of the base, and new pairs gathered on the machine stack
/// (which the GC scans, so the new Strings in it are safe) and inserted in bulk, which sizes
/// the table once instead of growing it per entry. A later pair replaces an earlier one (and
/// one of the base) with the same key.
struct EnvBuilder {
    env: VALUE,
    pairs: [VALUE; 2 * BATCH],
    len: usize,
}

impl EnvBuilder {
    fn new(base: RHash) -> Self {
        EnvBuilder {
            // SAFETY: `base` is a live Hash; the copy is new and referenced from this frame.
            env: unsafe { rb_sys::rb_hash_dup(base.as_raw()) },
            pairs: [QNIL; 2 * BATCH],
            len: 0,
        }
    }

    fn set(&mut self, key: VALUE, value: VALUE) {
        if self.len == self.pairs.len() {
            self.flush();
        }
        self.pairs[self.len] = key;
        self.pairs[self.len + 1] = value;
        self.len += 2;
    }

    fn flush(&mut self) {
        if self.len > 0 {
            // SAFETY: `env` is a live Hash; `pairs[..len]` holds live keys (frozen Strings) and
            // values, in pairs.
            unsafe { rb_sys::rb_hash_bulk_insert(self.len as _, self.pairs.as_ptr(), self.env) };
            self.len = 0;
        }
    }

    /// Whether the base has a value (not nil) for `key` (pairs set here are not looked at).
    fn base_has(&self, key: VALUE) -> bool {
        // SAFETY: `env` is a live Hash.
        unsafe { rb_sys::rb_hash_aref(self.env, key) != QNIL }
    }

    fn finish(mut self) -> Result<RHash, Error> {
        self.flush();
        // SAFETY: `env` is a live Hash.
        let env: magnus::Value = unsafe { magnus::rb_sys::FromRawValue::from_raw(self.env) };
        magnus::TryConvert::try_convert(env)
    }
}

fn str(ruby: &Ruby, bytes: &[u8]) -> VALUE {
    ruby.str_from_slice(bytes).as_raw()
}

/// Builds the env of `message` on a copy of `base`.
pub(crate) fn build_env(ruby: &Ruby, message: &Message<'_>, base: RHash) -> Result<RHash, Error> {
    let keys = keys(ruby);
    let head = message.head;
    let values = Values::new(message);
    let mut env = EnvBuilder::new(base);
    env.set(
        keys.request_method,
        method_value(ruby, message.get(head.method)),
    );
    // RFC 9112 3.2: Host checked, and an absolute-form target's authority taken over it.
    let target =
        h1p::target::request_target(message).map_err(|e| super::errors::parse_error(&e))?;
    let path = target.path;
    let path = &path[..path.iter().position(|&b| b == b'#').unwrap_or(path.len())];
    match path.iter().position(|&b| b == b'?') {
        Some(q) => {
            env.set(keys.path_info, str(ruby, &path[..q]));
            env.set(keys.query_string, str(ruby, &path[q + 1..]));
        }
        None => {
            env.set(keys.path_info, str(ruby, path));
            env.set(keys.query_string, keys.empty);
        }
    }
    env.set(
        keys.server_protocol,
        match head.version {
            Version::Http10 => keys.http10,
            Version::Http11 => keys.http11,
            Version::Http1 => keys.http1,
        },
    );
    // Each field's value; a repeated field's values are joined (cookies with "; ").
    let mut seen = Fields::default();
    // An absolute-form target: its authority stands for Host.
    let raw_target = message.get(head.target);
    let absolute = raw_target.first() != Some(&b'/') && raw_target != b"*";
    for field in head.fields.iter() {
        let name = message.get(field.name);
        let value = message.get(field.value);
        let common = field.known;
        if absolute && common == Some(HOST) {
            continue; // HTTP_HOST is the target's authority, set below
        }
        if seen.join(name, common, value, common == Some(COOKIE)) {
            continue;
        }
        let key = env_key(keys, name, common);
        let value = values.get(field.value);
        env.set(key, value);
        seen.add(name, common, value);
    }
    if absolute {
        let authority = target.authority.unwrap_or_default();
        env.set(keys.http[usize::from(HOST)], str(ruby, authority));
    }
    let listener_port = env.base_has(keys.server_port);
    let (name, port) = target
        .host_and_port()
        .map_or((None, None), |(name, port)| (Some(name), port));
    if let Some(name) = name {
        env.set(keys.server_name, ruby.str_from_slice(name).as_raw());
    }
    if !listener_port {
        // A Unix socket: the Host's port, else 80.
        env.set(
            keys.server_port,
            port.map_or(keys.port80, |p| ruby.str_from_slice(p).as_raw()),
        );
    }
    env.finish()
}

/// The fields set so far and their values (Strings made here, held by the env or its
/// builder), to join a repeated field's values into the first one's: ", " between them,
/// "; " for cookies. A known name is told by its position in `h1p::names::KNOWN`, another by
/// its bytes.
/// The first few are kept on the machine stack (no allocation for a usual request).
#[derive(Default)]
struct Fields<'a> {
    first: [SetField<'a>; FIELDS_ON_STACK],
    len: usize,
    more: Vec<SetField<'a>>,
}

#[derive(Clone, Copy, Default)]
struct SetField<'a> {
    name: &'a [u8],
    common: Option<u8>,
    value: VALUE,
}

const FIELDS_ON_STACK: usize = 32;

impl<'a> Fields<'a> {
    fn add(&mut self, name: &'a [u8], common: Option<u8>, value: VALUE) {
        let field = SetField {
            name,
            common,
            value,
        };
        match self.first.get_mut(self.len) {
            Some(slot) => *slot = field,
            None => self.more.push(field),
        }
        self.len += 1;
    }

    /// Appends `value` to an earlier field of the same name; false when there is none.
    fn join(&self, name: &[u8], common: Option<u8>, value: &[u8], cookie: bool) -> bool {
        let same = |f: &&SetField<'_>| match common {
            Some(_) => f.common == common,
            None => f.common.is_none() && f.name.eq_ignore_ascii_case(name),
        };
        let earlier = self.first[..self.len.min(FIELDS_ON_STACK)]
            .iter()
            .chain(&self.more)
            .find(same);
        let Some(earlier) = earlier else {
            return false;
        };
        let separator: &[u8] = if cookie { b"; " } else { b", " };
        let mut joined = Vec::with_capacity(separator.len() + value.len());
        joined.extend_from_slice(separator);
        joined.extend_from_slice(value);
        // SAFETY: `earlier.value` is a live String made by the env's builder (not shared with
        // the base); the env or the builder's stack array holds it.
        unsafe { rb_sys::rb_str_cat(earlier.value, joined.as_ptr().cast(), joined.len() as _) };
        true
    }
}

/// The env of an HTTP/2 request, on a copy of `base` (which carries SERVER_PROTOCOL and the
/// connection's entries): REQUEST_METHOD, PATH_INFO, QUERY_STRING, HTTP_HOST and SERVER_NAME
/// from the authority (unless a Host field came), CONTENT_TYPE, CONTENT_LENGTH and HTTP_*
/// (repeated fields joined with ", ", cookies with "; ", as HTTP/2 splits them).
pub(crate) fn build_h2_env<'a>(
    ruby: &Ruby,
    base: RHash,
    method: &str,
    path: &str,
    authority: Option<&str>,
    headers: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<RHash, Error> {
    let keys = keys(ruby);
    let mut env = EnvBuilder::new(base);
    env.set(keys.request_method, method_value(ruby, method.as_bytes()));
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    env.set(keys.path_info, ruby.str_new(path).as_raw());
    env.set(
        keys.query_string,
        if query.is_empty() {
            keys.empty
        } else {
            ruby.str_new(query).as_raw()
        },
    );
    let mut seen = Fields::default();
    let mut host = None;
    for (name, value) in headers {
        // (Names are lower-case: h2 checks.)
        let common = known(name);
        if common == Some(HOST) && host.is_none() {
            host = Some(value);
        }
        if seen.join(name, common, value, common == Some(COOKIE)) {
            continue;
        }
        let value = ruby.str_from_slice(value).as_raw();
        env.set(env_key(keys, name, common), value);
        seen.add(name, common, value);
    }
    if let Some(authority) = authority.filter(|_| host.is_none()) {
        env.set(
            keys.http[usize::from(HOST)],
            ruby.str_new(authority).as_raw(),
        );
        host = Some(authority.as_bytes());
    }
    if let Some(host) = host {
        env.set(
            keys.server_name,
            ruby.str_from_slice(h1p::target::split_authority(host).0)
                .as_raw(),
        );
    }
    env.finish()
}
