//! What a server makes of a request's target and Host (RFC 9112 3.2).

use h1p::pull::Parser;
use h1p::target::{request_target, Target};
use h1p::{Error, Limits, Mode};

mod common;

use common::Once;

fn target(request: &str) -> Result<(String, Option<String>), Error> {
    let mut parser = Parser::new(
        Once(Some(request.as_bytes().to_vec())),
        Mode::Server,
        Limits::default(),
    );
    let message = parser.parse_headers().unwrap().unwrap();
    request_target(&message).map(|Target { path, authority }| {
        (
            String::from_utf8(path.to_vec()).unwrap(),
            authority.map(|a| String::from_utf8(a.to_vec()).unwrap()),
        )
    })
}

fn ok(path: &str, authority: Option<&str>) -> Result<(String, Option<String>), Error> {
    Ok((path.to_owned(), authority.map(str::to_owned)))
}

#[test]
fn http11_needs_exactly_one_valid_host() {
    assert_eq!(
        target("GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n"),
        ok("/a", Some("example.com"))
    );
    assert_eq!(target("GET /a HTTP/1.1\r\n\r\n"), Err(Error::MissingHost));
    assert_eq!(
        target("GET /a HTTP/1.1\r\nHost: a.example\r\nhost: b.example\r\n\r\n"),
        Err(Error::RepeatedHost)
    );
    for bad in [
        "exa mple.com",
        "a/b",
        "a@b",
        "[::1",
        "a:b:c",
        "example.com:8o",
        "é.example",
        ":80",
        "%zz",
    ] {
        let request = format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n");
        assert_eq!(target(&request), Err(Error::InvalidHost), "{bad}");
    }
    for good in [
        "",
        "example.com:8080",
        "127.0.0.1",
        "[::1]:80",
        "[v1.fe80::a+en1]",
        "xn--bcher-kva.example",
        "a%20b",
    ] {
        let request = format!("GET / HTTP/1.1\r\nHost: {good}\r\n\r\n");
        assert_eq!(target(&request), ok("/", Some(good)), "{good}");
    }
}

#[test]
fn http10_may_leave_host_out_but_not_repeat_it() {
    assert_eq!(target("GET /a HTTP/1.0\r\n\r\n"), ok("/a", None));
    assert_eq!(
        target("GET /a HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"),
        Err(Error::RepeatedHost)
    );
}

#[test]
fn an_absolute_form_target_names_the_authority_over_host() {
    assert_eq!(
        target("GET http://example.com:8080/a/b?c=1 HTTP/1.1\r\nHost: other.example\r\n\r\n"),
        ok("/a/b?c=1", Some("example.com:8080"))
    );
    assert_eq!(
        target("GET HTTPS://example.com HTTP/1.1\r\nHost: x\r\n\r\n"),
        ok("/", Some("example.com"))
    );
    assert_eq!(
        target("GET http://example.com?q HTTP/1.1\r\nHost: x\r\n\r\n"),
        ok("?q", Some("example.com"))
    );
    for bad in [
        "http://user@example.com/",
        "http:///a",
        "ftp://example.com/",
        "example.com:80",
        "a",
    ] {
        let request = format!("GET {bad} HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(target(&request), Err(Error::InvalidTarget), "{bad}");
    }
}

#[test]
fn the_asterisk_form_is_options_only() {
    assert_eq!(
        target("OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n"),
        ok("", Some("example.com"))
    );
    assert_eq!(
        target("GET * HTTP/1.1\r\nHost: example.com\r\n\r\n"),
        Err(Error::InvalidTarget)
    );
}

#[test]
fn host_and_port_split() {
    let t = Target {
        path: b"/",
        authority: Some(b"[::1]:8080"),
    };
    assert_eq!(t.host_and_port(), Some((&b"[::1]"[..], Some(&b"8080"[..]))));
    let t = Target {
        path: b"/",
        authority: Some(b"example.com"),
    };
    assert_eq!(t.host_and_port(), Some((&b"example.com"[..], None)));
}
