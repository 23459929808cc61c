//! Ruby binding of Polyphony: one file per Ruby class under `ruby_api/`, shared plumbing under
//! `helpers/`. The fiber semantics (parents, children, supervision) are Ruby code in `lib/`.
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

mod helpers;
mod ruby_api;

use magnus::{Error, Ruby};

#[magnus::init]
fn init(ruby: &Ruby) -> Result<(), Error> {
    ruby_api::init(ruby)
}
