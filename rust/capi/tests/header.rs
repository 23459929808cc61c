//! `include/polyphony.h` is what cbindgen makes of this crate now. With UPDATE_HEADER=1 the
//! test rewrites it instead.

use std::path::Path;

#[test]
fn the_committed_header_is_current() {
    let crate_dir = env!("CARGO_MANIFEST_DIR");
    let config = cbindgen::Config::from_file(Path::new(crate_dir).join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen")
        .write(&mut generated);
    let header = Path::new(crate_dir).join("../../include/polyphony.h");
    if std::env::var_os("UPDATE_HEADER").is_some() {
        std::fs::write(&header, &generated).unwrap();
    }
    let committed = std::fs::read(&header).unwrap_or_default();
    assert!(
        committed == generated,
        "include/polyphony.h is stale: run UPDATE_HEADER=1 cargo test -p polyphony-capi --test header"
    );
}
