#![no_main]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::parse_all(data, h1p::Mode::Client));
