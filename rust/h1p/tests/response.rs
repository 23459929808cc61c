//! Response heads and body framing: what a server sends for each kind of response.

use h1p::response::{BodyFramer, BodySize, Framing, Request, ResponseHead, Trailers};
use h1p::{Error, HeadParser, Limit, Limits, Mode};

const GET: Request = Request {
    head: false,
    http10: false,
    reusable: true,
};

fn head(status: u16, fields: &[(&str, &str)]) -> ResponseHead {
    let mut head = ResponseHead::new(status).unwrap();
    for (name, value) in fields {
        head.field(name.as_bytes(), value.as_bytes()).unwrap();
    }
    head
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

#[test]
fn a_known_body_gets_its_content_length() {
    let done = head(200, &[("Content-Type", "text/plain")])
        .finish(BodySize::Known(5), GET)
        .unwrap();
    assert_eq!(
        text(&done.bytes),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
    );
    assert_eq!(done.framing, Framing::Length(5));
    assert!(done.keep_alive);
}

#[test]
fn a_stream_is_chunked_for_http11_and_ends_with_the_connection_for_http10() {
    let done = head(200, &[]).finish(BodySize::Unknown, GET).unwrap();
    assert_eq!(
        text(&done.bytes),
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    assert_eq!(done.framing, Framing::Chunked);
    assert!(done.keep_alive);

    let http10 = Request {
        http10: true,
        ..GET
    };
    let done = head(200, &[]).finish(BodySize::Unknown, http10).unwrap();
    assert_eq!(
        text(&done.bytes),
        "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(done.framing, Framing::UntilClose);
    assert!(!done.keep_alive);
}

#[test]
fn http10_keep_alive_is_said() {
    let http10 = Request {
        http10: true,
        ..GET
    };
    let done = head(200, &[]).finish(BodySize::Known(0), http10).unwrap();
    assert_eq!(
        text(&done.bytes),
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
    );
}

#[test]
fn bodiless_statuses_get_no_framing_and_no_body() {
    for status in [204, 304] {
        let done = head(status, &[]).finish(BodySize::Known(3), GET).unwrap();
        assert!(!text(&done.bytes).contains("Content-Length"), "{status}");
        assert_eq!(done.framing, Framing::Empty);
        assert!(done.keep_alive);
    }
}

#[test]
fn head_requests_get_the_framing_of_a_get_and_no_body() {
    let request = Request { head: true, ..GET };
    let done = head(200, &[]).finish(BodySize::Known(42), request).unwrap();
    assert!(text(&done.bytes).contains("Content-Length: 42\r\n"));
    assert_eq!(done.framing, Framing::Empty);
    let done = head(200, &[]).finish(BodySize::Unknown, request).unwrap();
    assert!(text(&done.bytes).contains("Transfer-Encoding: chunked\r\n"));
    assert_eq!(done.framing, Framing::Empty);
    // Rack::Head empties the body and keeps the app's Content-Length.
    let done = head(200, &[("Content-Length", "42")])
        .finish(BodySize::Known(0), request)
        .unwrap();
    assert!(text(&done.bytes).contains("Content-Length: 42\r\n"));
    assert!(done.keep_alive);
}

#[test]
fn informational_final_statuses_are_refused_but_101_with_upgrade() {
    for status in [100, 102, 103, 199] {
        let error = head(status, &[]).finish(BodySize::Known(0), GET);
        assert_eq!(error.unwrap_err(), Error::InformationalFinal, "{status}");
    }
    assert_eq!(
        head(101, &[]).finish(BodySize::Known(0), GET).unwrap_err(),
        Error::InformationalFinal
    );
    let done = head(101, &[("Upgrade", "websocket"), ("Connection", "Upgrade")])
        .finish(BodySize::Known(0), GET)
        .unwrap();
    assert_eq!(
        text(&done.bytes),
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    );
    assert!(!done.keep_alive);
}

#[test]
fn statuses_must_have_three_digits() {
    for status in [0, 99, 1000, 65535] {
        assert_eq!(ResponseHead::new(status).unwrap_err(), Error::InvalidStatus);
    }
    let unnamed = ResponseHead::new(599).unwrap().as_given();
    assert_eq!(text(&unnamed), "HTTP/1.1 599 \r\n\r\n");
}

#[test]
fn names_and_values_that_could_split_the_response_are_refused() {
    let mut head = ResponseHead::new(200).unwrap();
    for name in ["", "Bad Name", "X:Y", "X\r\nY", "Caf\u{e9}"] {
        assert_eq!(
            head.field(name.as_bytes(), b"v").unwrap_err(),
            Error::InvalidHeaderName,
            "{name:?}"
        );
    }
    for value in [
        "a\r\nSet-Cookie: x=1",
        "a\nb",
        "a\rb",
        "a\0b",
        "a\x02b",
        "a\x7fb",
    ] {
        assert_eq!(
            head.field(b"X", value.as_bytes()).unwrap_err(),
            Error::InvalidHeaderValue,
            "{value:?}"
        );
    }
    head.field(b"X", "caf\u{e9}\ttab".as_bytes()).unwrap();
}

#[test]
fn connection_close_from_the_app_or_the_request_ends_the_connection() {
    let done = head(200, &[("Connection", "Keep-Alive, CLOSE")])
        .finish(BodySize::Known(0), GET)
        .unwrap();
    assert!(!done.keep_alive);
    assert_eq!(text(&done.bytes).matches("Connection").count(), 1);

    let closing = Request {
        reusable: false,
        ..GET
    };
    let done = head(200, &[("Connection", "keep-alive")])
        .finish(BodySize::Known(0), closing)
        .unwrap();
    assert!(!done.keep_alive);
    assert!(text(&done.bytes).ends_with("Connection: close\r\n\r\n"));
}

#[test]
fn the_apps_own_framing_is_kept_and_checked() {
    let done = head(200, &[("Transfer-Encoding", "chunked")])
        .finish(BodySize::Unknown, GET)
        .unwrap();
    assert_eq!(done.framing, Framing::AsGiven);
    assert!(done.keep_alive);
    let done = head(200, &[("Transfer-Encoding", "gzip")])
        .finish(BodySize::Unknown, GET)
        .unwrap();
    assert!(
        !done.keep_alive,
        "only a final chunked tells where the body ends"
    );

    let done = head(200, &[("Content-Length", "3")])
        .finish(BodySize::Unknown, GET)
        .unwrap();
    assert_eq!(done.framing, Framing::Length(3));

    let errors = [
        (
            vec![("Content-Length", "3"), ("Transfer-Encoding", "chunked")],
            Error::ContentLengthWithTransferEncoding,
        ),
        (
            vec![("Content-Length", "3"), ("Content-Length", "4")],
            Error::RepeatedContentLength,
        ),
        (vec![("Content-Length", "-1")], Error::InvalidContentLength),
        (vec![("Content-Length", "")], Error::InvalidContentLength),
        (
            vec![("Content-Length", "99999999999999999999")],
            Error::InvalidContentLength,
        ),
    ];
    for (fields, error) in errors {
        assert_eq!(
            head(200, &fields)
                .finish(BodySize::Unknown, GET)
                .unwrap_err(),
            error
        );
    }
    head(200, &[("Content-Length", "3"), ("content-length", "3")])
        .finish(BodySize::Known(3), GET)
        .unwrap();
}

#[test]
fn a_known_body_that_does_not_match_its_content_length() {
    assert_eq!(
        head(200, &[("Content-Length", "10")])
            .finish(BodySize::Known(4), GET)
            .unwrap_err(),
        Error::ContentLengthMismatch {
            declared: 10,
            actual: 4
        }
    );
    // Longer: what was announced is sent, then the connection ends.
    let done = head(200, &[("Content-Length", "2")])
        .finish(BodySize::Known(4), GET)
        .unwrap();
    assert_eq!(done.framing, Framing::Length(2));
    assert!(!done.keep_alive);
    assert!(text(&done.bytes).ends_with("Connection: close\r\n\r\n"));
}

fn frame(framer: &mut BodyFramer, piece: &[u8], out: &mut Vec<u8>) {
    let framed = framer.piece(piece.len());
    out.extend_from_slice(framed.prefix());
    out.extend_from_slice(&piece[..framed.take]);
    out.extend_from_slice(framed.suffix);
}

#[test]
fn chunks_and_trailers() {
    let mut framer = BodyFramer::new(Framing::Chunked);
    let mut out = Vec::new();
    for piece in [&b"hello"[..], b"", &[b'x'; 300]] {
        frame(&mut framer, piece, &mut out);
    }
    let mut trailers = Trailers::new();
    trailers.field(b"X-Checksum", b"42").unwrap();
    assert_eq!(
        trailers.field(b"Content-Length", b"1").unwrap_err(),
        Error::FramingTrailer
    );
    out.extend_from_slice(&framer.finish(Some(trailers)).unwrap());
    let expected = format!(
        "5\r\nhello\r\n12c\r\n{}\r\n0\r\nX-Checksum: 42\r\n\r\n",
        "x".repeat(300)
    );
    assert_eq!(text(&out), expected);
    assert!(framer.keeps_connection());
    let mut plain = Vec::new();
    frame(&mut BodyFramer::new(Framing::Chunked), b"", &mut plain);
    assert!(plain.is_empty());
    assert_eq!(
        BodyFramer::new(Framing::Chunked).finish(None).unwrap(),
        b"0\r\n\r\n"
    );
}

#[test]
fn a_length_is_never_exceeded_nor_left_short_silently() {
    let mut framer = BodyFramer::new(Framing::Length(6));
    let mut out = Vec::new();
    frame(&mut framer, b"abcd", &mut out);
    assert_eq!(
        framer.finish(None).unwrap_err(),
        Error::ContentLengthMismatch {
            declared: 6,
            actual: 4
        }
    );
    frame(&mut framer, b"efgh", &mut out);
    assert_eq!(out, b"abcdef");
    assert!(!framer.keeps_connection());
    assert!(framer.finish(None).unwrap().is_empty());
}

#[test]
fn the_whole_head_is_bounded() {
    let limits = Limits {
        head: 100,
        ..Limits::default()
    };
    let mut parser = HeadParser::new(Mode::Server, limits);
    let mut request = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..10 {
        request.extend_from_slice(format!("X-{i}: {}\r\n", "v".repeat(20)).as_bytes());
    }
    let error = parser.parse(&request).unwrap_err();
    assert_eq!(
        error,
        Error::TooLarge {
            limit: Limit::Head,
            max: 100
        }
    );
    parser.reset();
    request.extend_from_slice(b"\r\n");
    assert_eq!(
        parser.parse(&request).unwrap_err(),
        Error::TooLarge {
            limit: Limit::Head,
            max: 100
        }
    );
    parser.reset();
    assert!(parser
        .parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap()
        .is_some());
}
