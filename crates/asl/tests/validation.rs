//! Validation messages, checked against the `.problems` files next to each definition in
//! `tests/definitions/` (`valid-*` must parse, `invalid-*` must not). `STOKE_BLESS=1` rewrites them.

use std::path::Path;
use stoke_asl::Definition;

#[test]
fn definitions_match_their_expected_problems() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/definitions");
    let bless = std::env::var_os("STOKE_BLESS").is_some();
    let mut seen = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries.into_iter().filter(|p| p.extension().is_some_and(|e| e == "json")) {
        seen += 1;
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let got = match Definition::parse_str(&text) {
            Ok(_) => String::new(),
            Err(problems) => problems.iter().map(|p| format!("{p}\n")).collect(),
        };
        if name.starts_with("valid-") {
            assert_eq!(got, "", "{name} should be valid");
            continue;
        }
        assert!(!got.is_empty(), "{name} should be invalid");
        let expected_path = path.with_extension("problems");
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("{} is missing; run with STOKE_BLESS=1", expected_path.display()));
        assert_eq!(got, expected, "{name}: problems changed (STOKE_BLESS=1 to accept)");
    }
    assert!(seen >= 5, "the definitions directory lost its files");
}
