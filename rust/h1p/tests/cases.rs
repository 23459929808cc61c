//! Runs every case of `spec/fixtures/http1-cases.json` (the shared HTTP/1 conformance and
//! smuggling cases, also run by the Ruby spec) through the pull parser, fed whole, one byte
//! at a time and in 7-byte pieces, and compares outcome, error stage and messages.

use std::convert::Infallible;

use h1p::pull::{Parser, PullError, Source};
use h1p::{Limits, Mode};
use serde_json::{json, Map, Value};

const CASES: &str = include_str!("../../../spec/fixtures/http1-cases.json");

struct Pieces {
    data: Vec<u8>,
    pos: usize,
    piece: usize,
}

impl Source for Pieces {
    type Error = Infallible;

    fn read(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<usize, Infallible> {
        let n = max.min(self.piece).min(self.data.len() - self.pos);
        buf.extend_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// One character per byte, as the cases file encodes bytes.
fn latin1(bytes: &[u8]) -> Value {
    Value::String(bytes.iter().map(|&b| b as char).collect())
}

fn from_latin1(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| u8::try_from(c as u32).expect("one char per byte"))
        .collect()
}

struct Outcome {
    error_stage: Option<&'static str>,
    error: Option<String>,
    messages: Vec<Value>,
}

fn run(raw: &[u8], mode: Mode, piece: usize) -> Outcome {
    let source = Pieces {
        data: raw.to_vec(),
        pos: 0,
        piece,
    };
    let mut parser = Parser::new(source, mode, Limits::default());
    let mut messages = Vec::new();
    let fail = |stage, error: PullError<Infallible>, messages| Outcome {
        error_stage: Some(stage),
        error: Some(match error {
            PullError::Parse(e) => e.to_string(),
            other => format!("{other:?}"),
        }),
        messages,
    };
    loop {
        let mut message = Map::new();
        match parser.parse_headers() {
            Ok(None) => break,
            Ok(Some(m)) => {
                let head = m.head;
                match mode {
                    Mode::Server => {
                        message.insert(
                            ":method".into(),
                            latin1(&m.get(head.method).to_ascii_uppercase()),
                        );
                        message.insert(":path".into(), latin1(m.get(head.target)));
                        message.insert(":protocol".into(), json!(head.version.as_str()));
                    }
                    Mode::Client => {
                        message.insert(":protocol".into(), json!(head.version.as_str()));
                        message.insert(":status".into(), json!(head.status));
                        message.insert(":status_message".into(), latin1(m.get(head.reason)));
                    }
                }
                let mut headers = Map::new();
                for (name, value) in m.fields() {
                    let name = String::from_utf8(name.to_ascii_lowercase()).expect("token");
                    let value = latin1(value);
                    match headers.get_mut(&name) {
                        None => {
                            headers.insert(name, value);
                        }
                        Some(Value::Array(values)) => values.push(value),
                        Some(first) => *first = json!([first.take(), value]),
                    }
                }
                message.insert("headers".into(), Value::Object(headers));
            }
            Err(e) => return fail("headers", e, messages),
        }
        match parser.read_body() {
            Ok(body) => {
                message.insert("body".into(), body.map_or(Value::Null, |b| latin1(&b)));
            }
            Err(e) => return fail("body", e, messages),
        }
        messages.push(Value::Object(message));
    }
    Outcome {
        error_stage: None,
        error: None,
        messages,
    }
}

#[test]
fn every_shared_case() {
    let cases: Value = serde_json::from_str(CASES).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 83);
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let raw = from_latin1(case["raw"].as_str().unwrap());
        let mode = if case["mode"] == "client" {
            Mode::Client
        } else {
            Mode::Server
        };
        for piece in [usize::MAX, 1, 7] {
            let outcome = run(&raw, mode, piece);
            let expected_stage = case["error_stage"].as_str();
            let stage_ok = match case["expect"].as_str().unwrap() {
                "ok" => outcome.error_stage.is_none(),
                _ => outcome.error_stage.is_some() && outcome.error_stage == expected_stage,
            };
            let messages_ok = case["expected"].is_null()
                || case["expected"].as_array().unwrap() == &outcome.messages;
            if !stage_ok || !messages_ok {
                failures.push(format!(
                    "{name} (pieces of {piece}): expected {} {:?} {}, got {:?} {:?} {}",
                    case["expect"],
                    expected_stage,
                    case["expected"],
                    outcome.error_stage,
                    outcome.error,
                    Value::Array(outcome.messages)
                ));
                break;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
