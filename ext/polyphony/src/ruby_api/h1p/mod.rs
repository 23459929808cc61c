//! `H1P`: the HTTP/1 parser (`H1P::Parser`) and the response writers (`H1P.send_response`...)
//! over the `h1p` crate.

mod errors;
pub(crate) mod hash;
mod names;
pub(crate) mod parser;
pub(crate) mod rack;
mod rack_response;
pub(crate) mod response;

use magnus::{prelude::*, Error, RModule, Ruby};

pub(crate) fn init(ruby: &Ruby) -> Result<RModule, Error> {
    let h1p = ruby.define_module("H1P")?;
    h1p.const_set("VERSION", env!("CARGO_PKG_VERSION"))?;
    errors::init(ruby, h1p)?;
    names::init(ruby)?;
    parser::init(ruby, h1p)?;
    response::init(ruby, h1p)?;
    Ok(h1p)
}
