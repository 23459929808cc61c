//! Behaviour the shared cases do not pin down: limits by name, framing of responses,
//! keep-alive, endless lines refused before their end, and incremental parsing.

use h1p::{Body, Error, HeadParser, Limit, Limits, Mode, Version};

fn parse(mode: Mode, raw: &[u8]) -> Result<Option<h1p::Head>, Error> {
    let mut parser = HeadParser::new(mode, Limits::default());
    parser.parse(raw).map(|head| head.cloned())
}

fn request(raw: &str) -> Result<h1p::Head, Error> {
    parse(Mode::Server, raw.as_bytes()).map(|head| head.expect("complete"))
}

fn response(raw: &str) -> Result<h1p::Head, Error> {
    parse(Mode::Client, raw.as_bytes()).map(|head| head.expect("complete"))
}

fn too_large(limit: Limit, max: u64) -> Error {
    Error::TooLarge { limit, max }
}

/// `req!(raw => expected error)` or `req!(raw, |head| assertions)`.
macro_rules! req {
    ($raw:expr => $error:expr) => {
        assert_eq!(request(&$raw).unwrap_err(), $error, "{:?}", $raw)
    };
    ($raw:expr, |$head:ident| $body:expr) => {{
        let $head = request(&$raw).unwrap();
        $body
    }};
}

#[test]
fn limits_are_named() {
    let long = |n| "a".repeat(n);
    req!(format!("{} / HTTP/1.1\r\n\r\n", "M".repeat(17)) => too_large(Limit::Method, 16));
    req!(format!("GET /{} HTTP/1.1\r\n\r\n", long(4096)) => too_large(Limit::Target, 4096));
    req!(format!("GET / HTTP/1.1\r\n{}: v\r\n\r\n", long(129)) => too_large(Limit::HeaderName, 128));
    req!(format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", long(2049)) => too_large(Limit::HeaderValue, 2048));
    let many = (0..257).map(|i| format!("x{i}: v\r\n")).collect::<String>();
    req!(format!("GET / HTTP/1.1\r\n{many}\r\n") => too_large(Limit::HeaderCount, 256));
    let reason = long(257);
    assert_eq!(
        response(&format!("HTTP/1.1 200 {reason}\r\n\r\n")).unwrap_err(),
        too_large(Limit::StatusMessage, 256)
    );
    assert_eq!(
        too_large(Limit::HeaderValue, 2048).to_string(),
        "header value length exceeds the limit of 2048"
    );
}

#[test]
fn limits_are_configurable() {
    let limits = Limits {
        target: 8,
        max_body: Some(10),
        ..Limits::default()
    };
    let mut parser = HeadParser::new(Mode::Server, limits);
    assert_eq!(
        parser
            .parse(b"GET /123456789 HTTP/1.1\r\n\r\n")
            .unwrap_err(),
        too_large(Limit::Target, 8)
    );
    let mut parser = HeadParser::new(Mode::Server, limits);
    let head = parser
        .parse(b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(head.body, Body::Invalid(too_large(Limit::Body, 10)));
    assert!(!head.keep_alive);
}

#[test]
fn endless_lines_are_refused_before_they_end() {
    let mut parser = HeadParser::new(Mode::Server, Limits::default());
    let endless = format!("GET / HTTP/1.1\r\nx-endless: {}", "v".repeat(3000));
    assert_eq!(
        parser.parse(endless.as_bytes()).unwrap_err(),
        too_large(Limit::HeaderValue, 2048)
    );
    let mut parser = HeadParser::new(Mode::Server, Limits::default());
    let endless = format!("GET /{}", "p".repeat(5000));
    assert_eq!(
        parser.parse(endless.as_bytes()).unwrap_err(),
        too_large(Limit::Target, 4096)
    );
    let mut parser = HeadParser::new(Mode::Server, Limits::default());
    let flood = "\r\n".repeat(20);
    assert_eq!(
        parser.parse(flood.as_bytes()).unwrap_err(),
        Error::InvalidMethod
    );
}

#[test]
fn a_head_fed_byte_by_byte_parses_like_a_whole_one() {
    let raw = b"POST /x HTTP/1.1\r\nHost: a\nContent-Length: 3\r\n\r\nabc";
    let mut parser = HeadParser::new(Mode::Server, Limits::default());
    for end in 1..raw.len() - 3 {
        assert!(
            parser.parse(&raw[..end]).unwrap().is_none(),
            "complete at {end}"
        );
    }
    let head = parser.parse(&raw[..raw.len() - 3]).unwrap().unwrap();
    assert_eq!(head.body, Body::Length(3));
    assert_eq!(head.len, raw.len() - 3);
}

#[test]
fn request_framing_and_keep_alive() {
    req!("GET / HTTP/1.1\r\n\r\n", |h| assert!(
        h.keep_alive && h.body == Body::None
    ));
    req!("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", |h| assert!(
        !h.keep_alive
    ));
    req!("GET / HTTP/1.0\r\n\r\n", |h| assert!(!h.keep_alive));
    req!(
        "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
        |h| assert!(h.keep_alive)
    );
    req!("GET / HTTP/1\r\n\r\n", |h| assert_eq!(
        h.version,
        Version::Http1
    ));
    req!(
        "POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n",
        |h| assert_eq!(h.body, Body::Chunked)
    );
    req!("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", |h| {
        assert_eq!(h.body, Body::Invalid(Error::UnsupportedTransferEncoding));
        assert!(!h.keep_alive);
    });
    req!("POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n" => Error::InvalidContentLength);
    req!("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n" => Error::InvalidContentLength);
    req!("GET / HTTP/2.0\r\n\r\n" => Error::InvalidProtocol);
    req!("GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n" => Error::InvalidHeaderValue);
    req!("GET / HTTP/1.1\r\n\tX: a\r\n\r\n" => Error::ObsFold);
    req!("GET /a\x01b HTTP/1.1\r\n\r\n" => Error::InvalidTarget);
}

#[test]
fn response_framing() {
    let body = |raw: &str| response(raw).unwrap().body;
    assert_eq!(body("HTTP/1.1 200 OK\r\n\r\n"), Body::UntilClose);
    assert_eq!(
        body("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"),
        Body::None
    );
    assert_eq!(body("HTTP/1.1 304 Not Modified\r\n\r\n"), Body::None);
    assert_eq!(body("HTTP/1.1 101 Switching Protocols\r\n\r\n"), Body::None);
    assert_eq!(
        body("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
        Body::Chunked
    );
    assert_eq!(
        body("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
        Body::UntilClose
    );
    let both =
        response("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
    let both = both.unwrap();
    assert!(both.body == Body::Chunked && !both.keep_alive);
    let head = response("HTTP/1.1 404\r\n\r\n").unwrap();
    assert_eq!((head.status, head.reason.len()), (404, 0));
    assert_eq!(
        response("HTTP/1.1 20 OK\r\n\r\n").unwrap_err(),
        Error::InvalidStatus
    );
}

#[test]
fn a_limit_set_to_the_largest_value_means_none() {
    // (Found by fuzz/fuzz_targets/build_response.rs: the trailer line's bound overflowed.)
    let limits = Limits {
        header_name: usize::MAX,
        header_value: usize::MAX,
        status_message: usize::MAX,
        head: usize::MAX,
        ..Limits::default()
    };
    let mut parser = HeadParser::new(Mode::Client, limits);
    assert!(parser
        .parse(b"HTTP/1.1 200 OK\r\nX: y\r\n\r\n")
        .unwrap()
        .is_some());
    let mut decoder = h1p::ChunkedDecoder::new(limits);
    let step = decoder.decode(b"0\r\nX-Partial").unwrap();
    assert_eq!(step.consumed, 3);
    assert!(decoder.decode(b"X-Partial").unwrap().data.is_none());
}

#[test]
fn known_names_are_told_by_position_and_checked_like_any_other() {
    use h1p::names::{known, CONTENT_LENGTH, HOST, KNOWN, UPGRADE};
    req!(
        "GET / HTTP/1.1\r\nHOST: a\r\ncontent-Length: 0\r\nX-Mine: 1\r\nupgrade: h2c\r\n\r\n",
        |head| {
            let known: Vec<_> = head.fields.iter().map(|f| f.known).collect();
            assert_eq!(
                known,
                [Some(HOST), Some(CONTENT_LENGTH), None, Some(UPGRADE)]
            );
            assert!(head.upgrade);
        }
    );
    req!("GET / HTTP/1.1\r\nHost: a\r\n\r\n", |head| assert!(
        !head.upgrade
    ));
    // Every known name, in either case, is taken as that name; a near miss is not.
    for (i, name) in KNOWN.iter().enumerate() {
        for name in [name.to_string(), name.to_uppercase()] {
            req!(format!("GET / HTTP/1.1\r\n{name}: 1\r\n\r\n"), |head| {
                assert_eq!(head.fields[0].known, Some(i as u8), "{name}");
            });
            req!(format!("GET / HTTP/1.1\r\n{name}s: v\r\n\r\n"), |head| {
                assert_eq!(head.fields[0].known, known(format!("{name}s").as_bytes()));
            });
        }
    }
    // A known name spoiled where it ends is still refused for what is wrong with it.
    req!("GET / HTTP/1.1\r\nHost : a\r\n\r\n" => Error::WhitespaceBeforeColon);
    req!("GET / HTTP/1.1\r\nHost(: a\r\n\r\n" => Error::InvalidHeaderName);
    req!("GET / HTTP/1.1\r\nHost\x7f: a\r\n\r\n" => Error::InvalidHeaderName);
    req!("GET / HTTP/1.1\r\nH\u{e9}st: a\r\n\r\n" => Error::InvalidHeaderName);
    req!("GET / HTTP/1.1\r\n: a\r\n\r\n" => Error::InvalidHeaderName);
    req!("GET / HTTP/1.1\r\n Host: a\r\n\r\n" => Error::ObsFold);
    let limits = Limits {
        header_name: 3,
        ..Limits::default()
    };
    let mut parser = HeadParser::new(Mode::Server, limits);
    assert_eq!(
        parser
            .parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap_err(),
        too_large(Limit::HeaderName, 3)
    );
}
