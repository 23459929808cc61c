//! The Ruby classes, one per file.

mod acme;
mod backend;
mod h1p;
mod http2;
pub(crate) mod io;
mod shared;
pub(crate) mod tls;
mod transport;
mod websocket;

use magnus::{Error, Ruby};

pub(crate) fn init(ruby: &Ruby) -> Result<(), Error> {
    let polyphony = ruby.define_module("Polyphony")?;
    backend::init(ruby, polyphony)?;
    io::init(ruby, polyphony)?;
    tls::init(ruby, polyphony)?;
    acme::init(ruby, polyphony)?;
    http2::init(ruby, polyphony)?;
    websocket::init(ruby, polyphony)?;
    shared::init(ruby, polyphony)?;
    h1p::init(ruby)
}
