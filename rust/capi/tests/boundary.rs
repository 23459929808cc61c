//! Every function the library exports runs its body inside the panic boundary (`boundary` or
//! `boundary_void` in `src/status.rs`), so that no panic unwinds into C; and every one is in
//! the header.

use std::path::Path;

/// The exported functions of one source file: (name, lines of the body).
fn exported(source: &str) -> Vec<(String, Vec<&str>)> {
    let mut found = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("#[no_mangle]") {
        rest = &rest[at..];
        let name_at = rest.find(" fn ").expect("a function after #[no_mangle]") + 4;
        let name: String = rest[name_at..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // A signature holds no brace: the body opens at the first one and ends with the first
        // line that closes at column 0.
        let open = rest[name_at..].find("{\n").expect("a body") + name_at + 2;
        let end = rest[open..].find("\n}\n").expect("the body's end") + open;
        found.push((name, rest[open..end].lines().collect()));
        rest = &rest[end..];
    }
    found
}

#[test]
fn every_exported_function_is_inside_the_panic_boundary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = std::fs::read_to_string(root.join("../../include/polyphony.h")).unwrap();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root.join("src")).unwrap() {
        let path = entry.unwrap().path();
        let source = std::fs::read_to_string(&path).unwrap();
        for (name, body) in exported(&source) {
            // Only the declarations of what the boundary hands back may come before it.
            let code: Vec<&str> = body
                .iter()
                .map(|l| l.trim_start())
                .filter(|l| !l.starts_with("//"))
                .collect();
            let guarded = code
                .iter()
                .position(|l| l.starts_with("boundary(") || l.starts_with("boundary_void("))
                .is_some_and(|at| code[..at].iter().all(|l| l.starts_with("let mut ")));
            assert!(
                guarded,
                "{name} in {} does not run inside the boundary:\n{}",
                path.display(),
                body.join("\n")
            );
            assert!(
                [" ", "*"]
                    .iter()
                    .any(|before| header.contains(&format!("{before}{name}("))),
                "{name} is not in the header"
            );
            names.push(name);
        }
    }
    assert!(names.len() >= 35, "found only {names:?}");
}
