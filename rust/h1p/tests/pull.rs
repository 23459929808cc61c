//! The pull parser: a Content-Length body handed over to a caller that moves it itself, and a
//! chunked body's trailer fields kept for its message only.

use h1p::pull::Parser;
use h1p::{Limits, Mode};

mod common;

use common::Once;

#[test]
fn a_length_body_is_handed_over_with_what_is_buffered_and_what_remains() {
    let raw = b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabcd".to_vec();
    let mut parser = Parser::new(Once(Some(raw)), Mode::Server, Limits::default());
    parser.parse_headers().unwrap().unwrap();
    let (buffered, remaining) = parser.take_body_for_splice().unwrap();
    assert_eq!((buffered, remaining), (&b"abcd"[..], 6));
    assert!(parser.is_complete());
    assert!(parser.take_body_for_splice().is_none());
}

#[test]
fn a_chunked_body_is_not_handed_over() {
    let raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n".to_vec();
    let mut parser = Parser::new(Once(Some(raw)), Mode::Server, Limits::default());
    parser.parse_headers().unwrap().unwrap();
    assert!(parser.take_body_for_splice().is_none());
    assert_eq!(parser.read_body().unwrap().as_deref(), Some(&b"a"[..]));
}

#[test]
fn trailer_fields_belong_to_their_message_once_its_body_is_read() {
    let raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
                1\r\na\r\n0\r\nX-Checksum: 42\r\n\r\n\
                GET /next HTTP/1.1\r\n\r\n"
        .to_vec();
    let mut parser = Parser::new(Once(Some(raw)), Mode::Server, Limits::default());
    parser.parse_headers().unwrap().unwrap();
    assert!(parser.trailers().is_empty());
    assert_eq!(parser.read_body().unwrap().as_deref(), Some(&b"a"[..]));
    assert_eq!(
        parser.trailers(),
        [(b"x-checksum".to_vec(), b"42".to_vec())]
    );
    parser.parse_headers().unwrap().unwrap();
    assert!(parser.trailers().is_empty());
}

#[test]
fn a_restarted_parser_keeps_nothing_of_its_last_source_but_its_limits() {
    let first = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
                  1\r\na\r\n0\r\nX-Checksum: 42\r\n\r\nGET /left HTTP/1.1\r\n\r\n"
        .to_vec();
    let limits = Limits {
        headers: 1,
        ..Limits::default()
    };
    let mut parser = Parser::new(Once(Some(first)), Mode::Server, limits);
    parser.parse_headers().unwrap().unwrap();
    parser.read_body().unwrap();
    assert!(!parser.trailers().is_empty());
    let old = parser.restart(Once(Some(
        b"GET /b HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n".to_vec(),
    )));
    assert!(old.0.is_none());
    assert!(parser.trailers().is_empty());
    assert!(parser.parse_headers().is_err()); // two fields: over its limit of one
    parser.restart(Once(Some(b"GET /c HTTP/1.1\r\nA: 1\r\n\r\n".to_vec())));
    let message = parser.parse_headers().unwrap().unwrap();
    assert_eq!(message.get(message.head.target), b"/c");
    assert!(parser.parse_headers().unwrap().is_none());
}
