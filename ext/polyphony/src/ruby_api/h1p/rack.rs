//! `H1P::Parser#parse_rack_env(base)`: the next request as a Rack env, built here in one go
//! (Tipi's hot path): no headers Hash in between, keys interned once.

use std::collections::HashMap;
use std::sync::OnceLock;

use h1p::pull::Message;
use h1p::Version;
use magnus::rb_sys::AsRawValue;
use magnus::{prelude::*, Error, RHash, Ruby};
use rb_sys::VALUE;

use super::names::{frozen, Fnv};
use super::parser::{method_value, Values};

struct Keys {
    request_method: VALUE,
    path_info: VALUE,
    query_string: VALUE,
    server_protocol: VALUE,
    server_name: VALUE,
    server_port: VALUE,
    content_type: VALUE,
    content_length: VALUE,
    http10: VALUE,
    http11: VALUE,
    http1: VALUE,
    empty: VALUE,
    port80: VALUE,
    /// "HTTP_USER_AGENT" for "user-agent", for the common names.
    http: HashMap<Vec<u8>, VALUE, std::hash::BuildHasherDefault<Fnv>>,
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
        content_type: frozen(ruby, "CONTENT_TYPE"),
        content_length: frozen(ruby, "CONTENT_LENGTH"),
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
        http: super::names::HEADERS
            .iter()
            .map(|name| {
                let key = env_key_bytes(name.as_bytes());
                let value = frozen(ruby, std::str::from_utf8(&key).unwrap_or_default());
                (name.as_bytes().to_vec(), value)
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

/// The env key of a header field (CONTENT_TYPE and CONTENT_LENGTH have no HTTP_ prefix).
fn env_key(ruby: &Ruby, keys: &Keys, name: &[u8]) -> VALUE {
    if name.eq_ignore_ascii_case(b"content-type") {
        return keys.content_type;
    }
    if name.eq_ignore_ascii_case(b"content-length") {
        return keys.content_length;
    }
    let mut lower = [0u8; 64];
    if name.len() <= lower.len() {
        let lower = &mut lower[..name.len()];
        lower.copy_from_slice(name);
        lower.make_ascii_lowercase();
        if let Some(key) = keys.http.get(&lower[..]) {
            return *key;
        }
    }
    let key = env_key_bytes(name);
    let _ = ruby; // the GVL is held
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

/// Builds the env of `message` on a copy of `base`.
pub(crate) fn build_env(ruby: &Ruby, message: &Message<'_>, base: RHash) -> Result<RHash, Error> {
    let keys = keys(ruby);
    let head = message.head;
    let values = Values::new(ruby, message);
    // SAFETY: `base` is a live Hash; the copy is new and referenced from this frame.
    let env = unsafe { rb_sys::rb_hash_dup(base.as_raw()) };
    let aset = |key: VALUE, value: VALUE| {
        // SAFETY: `env` is the live Hash made above; keys and values are live objects.
        unsafe { rb_sys::rb_hash_aset(env, key, value) };
    };
    aset(
        keys.request_method,
        method_value(ruby, message.get(head.method)),
    );
    let target = message.get(head.target);
    match target.iter().position(|&b| b == b'?') {
        Some(q) => {
            let start = head.target.start;
            let q = q as u32; // a target is at most a few KiB
            aset(
                keys.path_info,
                values.get(h1p::Span {
                    start,
                    end: start + q,
                }),
            );
            aset(
                keys.query_string,
                values.get(h1p::Span {
                    start: start + q + 1,
                    end: head.target.end,
                }),
            );
        }
        None => {
            aset(keys.path_info, values.get(head.target));
            aset(keys.query_string, keys.empty);
        }
    }
    aset(
        keys.server_protocol,
        match head.version {
            Version::Http10 => keys.http10,
            Version::Http11 => keys.http11,
            Version::Http1 => keys.http1,
        },
    );
    // Each field's value; a repeated field's values are joined (cookies with "; ").
    let mut seen: Vec<(&[u8], VALUE)> = Vec::with_capacity(head.fields.len());
    let mut host = None;
    for field in head.fields.iter() {
        let name = message.get(field.name);
        let value = message.get(field.value);
        if name.eq_ignore_ascii_case(b"host") && host.is_none() {
            host = Some(value);
        }
        if let Some((_, key)) = seen.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            // SAFETY: `env` is live; the key is in it (inserted below when first seen).
            let earlier = unsafe { rb_sys::rb_hash_aref(env, *key) };
            let separator: &[u8] = if name.eq_ignore_ascii_case(b"cookie") {
                b"; "
            } else {
                b", "
            };
            let mut joined = Vec::with_capacity(separator.len() + value.len());
            joined.extend_from_slice(separator);
            joined.extend_from_slice(value);
            // SAFETY: `earlier` is a String this function made (not shared with `base`).
            unsafe { rb_sys::rb_str_cat(earlier, joined.as_ptr().cast(), joined.len() as _) };
            continue;
        }
        let key = env_key(ruby, keys, name);
        aset(key, values.get(field.value));
        seen.push((name, key));
    }
    // SAFETY: `env` is the live Hash made above.
    let listener_port = unsafe { rb_sys::rb_hash_aref(env, keys.server_port) } != QNIL;
    let (name, port) = host.map_or((None, None), |host| {
        let (name, port) = split_host(host);
        (Some(name), port)
    });
    if let Some(name) = name {
        aset(keys.server_name, ruby.str_from_slice(name).as_raw());
    }
    if !listener_port {
        // A Unix socket: the Host's port, else 80.
        aset(
            keys.server_port,
            port.map_or(keys.port80, |p| ruby.str_from_slice(p).as_raw()),
        );
    }
    // SAFETY: `env` is a live Hash.
    let env: magnus::Value = unsafe { magnus::rb_sys::FromRawValue::from_raw(env) };
    magnus::TryConvert::try_convert(env)
}

/// "example.com:8080" → ("example.com", Some("8080")); "[::1]:80" → ("[::1]", Some("80")).
fn split_host(host: &[u8]) -> (&[u8], Option<&[u8]>) {
    let port_at = if host.first() == Some(&b'[') {
        host.iter()
            .position(|&b| b == b']')
            .map(|end| end + 1)
            .filter(|&i| host.get(i) == Some(&b':'))
    } else {
        host.iter().position(|&b| b == b':')
    };
    match port_at {
        Some(i) => (&host[..i], Some(&host[i + 1..]).filter(|p| !p.is_empty())),
        None => (host, None),
    }
}
