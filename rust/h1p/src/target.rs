//! What a request names: its path and the authority it is for (RFC 9112 3.2 and 3.2.2), as an
//! origin server must read them. The parser accepts any Host field, as H1P does; a server
//! checks the request with [`request_target`].

use crate::pull::Message;
use crate::scan::eq_ignore_case;
use crate::{Error, Version};

/// A request's target as a server uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// The path and query (`/a?b=1`): the target itself in origin form, the part after the
    /// authority in absolute form (`/` when none), empty for `*` (asterisk form, `OPTIONS *`).
    pub path: &'a [u8],
    /// The authority: the absolute form's, else the Host field's (empty when the field is).
    /// None for an HTTP/1.0 request without Host.
    pub authority: Option<&'a [u8]>,
}

impl Target<'_> {
    /// The authority's host and port: `example.com:8080` → (`example.com`, Some(`8080`)), `[::1]`
    /// → (`[::1]`, None).
    pub fn host_and_port(&self) -> Option<(&[u8], Option<&[u8]>)> {
        self.authority.map(split_authority)
    }
}

/// Checks a request as RFC 9112 3.2 requires of a server, and gives its target: an HTTP/1.1
/// request must have exactly one Host field, any request at most one, and its value must be an
/// authority (`uri-host [":" port]`, or empty). An absolute-form target's own authority is
/// checked too, and wins over the Host field (3.2.2). `*` is only for OPTIONS.
pub fn request_target<'a>(message: &Message<'a>) -> Result<Target<'a>, Error> {
    let head = message.head;
    let mut hosts = message
        .fields()
        .filter(|(name, _)| eq_ignore_case(name, b"host"));
    let host = hosts.next().map(|(_, value)| value);
    if hosts.next().is_some() {
        return Err(Error::RepeatedHost);
    }
    if host.is_none() && head.version == Version::Http11 {
        return Err(Error::MissingHost);
    }
    if host.is_some_and(|host| !is_authority(host)) {
        return Err(Error::InvalidHost);
    }
    let target = message.get(head.target);
    if target == b"*" {
        if message.get(head.method) != b"OPTIONS" {
            return Err(Error::InvalidTarget);
        }
        return Ok(Target {
            path: b"",
            authority: host,
        });
    }
    if target.first() == Some(&b'/') {
        return Ok(Target {
            path: target,
            authority: host,
        });
    }
    let Some(rest) = strip_scheme(target) else {
        // (authority-form is CONNECT's, for proxies: not an origin server's.)
        return Err(Error::InvalidTarget);
    };
    let end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?' || b == b'#')
        .unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() || !is_authority(authority) || authority.contains(&b'@') {
        return Err(Error::InvalidTarget);
    }
    Ok(Target {
        path: if path.is_empty() { b"/" } else { path },
        authority: Some(authority),
    })
}

/// `http://` or `https://` in any case, taken off.
fn strip_scheme(target: &[u8]) -> Option<&[u8]> {
    let colon = target.iter().position(|&b| b == b':')?;
    let scheme = &target[..colon];
    let rest = target[colon..].strip_prefix(b"://")?;
    (eq_ignore_case(scheme, b"http") || eq_ignore_case(scheme, b"https")).then_some(rest)
}

/// `uri-host [":" port]` of RFC 3986 (empty too): a bracketed IP literal, or a reg-name (which
/// includes IPv4 addresses) of unreserved characters, percent escapes and sub-delims.
fn is_authority(value: &[u8]) -> bool {
    let (host, port) = split_authority(value);
    let port_ok = port.is_none_or(|port| port.iter().all(u8::is_ascii_digit));
    let host_ok = match host {
        [b'[', inner @ .., b']'] => {
            !inner.is_empty()
                && inner.iter().all(|&b| {
                    // IPv6 (hex digits, ':' and '.'), or IPvFuture (`v1.` then unreserved,
                    // sub-delims and ':').
                    b.is_ascii_alphanumeric() || b"-._~:".contains(&b) || is_sub_delim(b)
                })
        }
        _ => reg_name(host),
    };
    port_ok && host_ok && !(host.is_empty() && port.is_some())
}

fn reg_name(host: &[u8]) -> bool {
    let mut i = 0;
    while i < host.len() {
        let b = host[i];
        if b == b'%' {
            let escaped = host.get(i + 1..i + 3);
            if !escaped.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !(b.is_ascii_alphanumeric() || b"-._~".contains(&b) || is_sub_delim(b)) {
            return false;
        }
        i += 1;
    }
    true
}

fn is_sub_delim(b: u8) -> bool {
    b"!$&'()*+,;=".contains(&b)
}

/// "example.com:8080" → ("example.com", Some("8080")); "[::1]:80" → ("[::1]", Some("80")); an
/// empty port counts as none.
pub fn split_authority(value: &[u8]) -> (&[u8], Option<&[u8]>) {
    let port_at = if value.first() == Some(&b'[') {
        value
            .iter()
            .position(|&b| b == b']')
            .map(|end| end + 1)
            .filter(|&i| value.get(i) == Some(&b':'))
    } else {
        value.iter().rposition(|&b| b == b':')
    };
    match port_at {
        Some(i) => (
            &value[..i],
            Some(&value[i + 1..]).filter(|port| !port.is_empty()),
        ),
        None => (value, None),
    }
}
