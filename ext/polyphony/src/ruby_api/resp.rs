//! A minimal blocking Redis client (RESP2 over TCP), for what must reach Redis outside a Ruby
//! fiber: an ACME order's thread writing its challenge responses, and the TLS handshake of a
//! validator asking for a TLS-ALPN-01 certificate another server's order made. One connection
//! per call: both are rare (a few per order).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Where a `redis://[:PASSWORD@]HOST:PORT/DB` URL points.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    address: String,
    password: Option<String>,
    db: u32,
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| format!("not a redis:// URL: {url}"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (password, host) = match authority.rsplit_once('@') {
            Some((user, host)) => (user.split_once(':').map(|(_, p)| p.to_string()), host),
            None => (None, authority),
        };
        let address = if host.contains(':') && !host.ends_with(']') {
            host.to_string()
        } else {
            format!("{host}:6379")
        };
        let db = if path.is_empty() {
            0
        } else {
            path.parse().map_err(|_| format!("bad database in {url}"))?
        };
        Ok(Self {
            address,
            password,
            db,
        })
    }

    /// Sends `args` as one command and returns a bulk reply's bytes (nil: None).
    pub(crate) fn call(&self, args: &[&[u8]]) -> Result<Option<Vec<u8>>, String> {
        let error = |e: std::io::Error| format!("redis {}: {e}", self.address);
        let stream = TcpStream::connect(&self.address).map_err(error)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(error)?;
        let mut writer = stream.try_clone().map_err(error)?;
        let mut reader = BufReader::new(stream);
        if let Some(password) = &self.password {
            writer
                .write_all(&encode(&[b"AUTH", password.as_bytes()]))
                .map_err(error)?;
            reply(&mut reader).map_err(|e| format!("redis {}: {e}", self.address))?;
        }
        if self.db != 0 {
            let db = self.db.to_string();
            writer
                .write_all(&encode(&[b"SELECT", db.as_bytes()]))
                .map_err(error)?;
            reply(&mut reader).map_err(|e| format!("redis {}: {e}", self.address))?;
        }
        writer.write_all(&encode(args)).map_err(error)?;
        reply(&mut reader).map_err(|e| format!("redis {}: {e}", self.address))
    }
}

fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// One reply: a bulk string's bytes, a status's or an integer's text, None for nil; an error
/// reply is an Err. (Arrays are not needed here.)
fn reply(reader: &mut impl BufRead) -> Result<Option<Vec<u8>>, String> {
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line.trim_end_matches("\r\n");
    let (kind, body) = line.split_at(line.len().min(1));
    match kind {
        "+" | ":" => Ok(Some(body.as_bytes().to_vec())),
        "-" => Err(body.to_string()),
        "$" => {
            let length: i64 = body.parse().map_err(|_| format!("bad reply {line:?}"))?;
            if length < 0 {
                return Ok(None);
            }
            let mut data = vec![0; length as usize + 2];
            reader.read_exact(&mut data).map_err(|e| e.to_string())?;
            data.truncate(length as usize);
            Ok(Some(data))
        }
        _ => Err(format!("unexpected reply {line:?}")),
    }
}
