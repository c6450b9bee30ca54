//! The code's shape, checked: within a crate, no source files import each other in a circle. A circle
//! means two files that cannot be read, tested or moved apart (the queue, the instance's life and the
//! Runtime API should form a line). Reads the sources as text; starts nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read the source directory").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `a/b.rs` and `a/b/mod.rs` are module `a::b`; `lib.rs` and `main.rs` the crate root (`""`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("below src").with_extension("");
    let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    let mut module = parts.join("::");
    if let Some(parent) = module.strip_suffix("::mod") {
        module = parent.to_string();
    }
    if module == "lib" || module == "main" {
        module.clear();
    }
    module
}

/// The paths a file names after `crate::` and `super::` (its test module left out: tests may reach
/// anywhere).
fn references(text: &str, module: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let path_at = |rest: &str| -> String {
        rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect::<String>()
    };
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        out.push(path_at(&code[i + "crate::".len()..]));
    }
    // `module` names `foo` for both `foo.rs` and `foo/mod.rs`, so `super` is one level up either way.
    let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
    for (i, _) in code.match_indices("super::") {
        if code[..i].ends_with("::") {
            continue; // `super::super::` is read from its first `super`.
        }
        let mut base = parent.to_string();
        let mut rest = &code[i + "super::".len()..];
        while let Some(r) = rest.strip_prefix("super::") {
            base = base.rsplit_once("::").map_or(String::new(), |(p, _)| p.to_string());
            rest = r;
        }
        let path = path_at(rest);
        out.push(if base.is_empty() { path } else { format!("{base}::{path}") });
    }
    out
}

/// The circles (strongly connected parts of more than one file) of a crate's import graph.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Files that reach each other both ways, by a closure over the (small) graph.
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for next in graph.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> = graph.keys().map(|m| (m, reach(m))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for m in graph.keys() {
        if done.contains(m) {
            continue;
        }
        let part: Vec<String> =
            graph.keys().filter(|o| *o == m || (reached[m].contains(*o) && reached[*o].contains(m))).cloned().collect();
        done.extend(part.iter().cloned());
        if part.len() > 1 {
            out.push(part);
        }
    }
    out
}

fn crate_circles(src: &Path) -> Vec<Vec<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let texts: BTreeMap<String, String> =
        files.iter().map(|f| (module_of(src, f), std::fs::read_to_string(f).expect("read a source file"))).collect();
    // The longest known module a path starts with: `queue::Queue` is the file `queue`.
    let resolve = |path: &str| -> Option<String> {
        let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
        (1..=parts.len()).rev().map(|n| parts[..n].join("::")).find(|m| texts.contains_key(m))
    };
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in &texts {
        let edges = graph.entry(module.clone()).or_default();
        for r in references(text, module) {
            // A child reaching into its parent (or the crate root) is how Rust modules are built, not a
            // circle between siblings.
            match resolve(&r) {
                Some(target)
                    if target != *module && !module.starts_with(&format!("{target}::")) && !target.is_empty() =>
                {
                    edges.insert(target);
                }
                _ => {}
            }
        }
    }
    circles(&graph)
}

#[test]
fn no_source_files_import_each_other_in_a_circle() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(&crates)
        .expect("read crates/")
        .flatten()
        .filter(|e| e.path().join("src").is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in &names {
        for circle in crate_circles(&crates.join(name).join("src")) {
            found.push((name.clone(), circle));
        }
    }
    assert!(
        found.is_empty(),
        "files that import each other in a circle: {found:?}; break the circle (a module both import, or one \
         direction only)"
    );
}

#[test]
fn the_checker_sees_a_circle_and_a_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path();
    std::fs::write(src.join("lib.rs"), "mod a; mod b; mod c;\n").unwrap();
    std::fs::write(src.join("a.rs"), "use crate::b::B;\nuse super::c;\n").unwrap();
    std::fs::write(src.join("b.rs"), "pub struct B;\nfn f() { crate::a::g() }\n").unwrap();
    std::fs::write(src.join("c.rs"), "#[cfg(test)]\nmod tests { use crate::a; }\n").unwrap();
    assert_eq!(crate_circles(src), vec![vec!["a".to_string(), "b".to_string()]]);
    std::fs::write(src.join("b.rs"), "pub struct B;\n").unwrap();
    assert!(crate_circles(src).is_empty(), "a line is not a circle; a test module's imports do not count");
}
