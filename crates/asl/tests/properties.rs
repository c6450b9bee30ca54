//! Property tests (bounded fuzzing on stable Rust) of the States Language parser, JSONPath, payload
//! templates and intrinsic functions: on any input they answer a value or an error, never a panic, and
//! what they accept behaves. `PROPTEST_CASES=N` (scripts/fuzz --long) runs more cases; a failing case found
//! is written to `proptest-regressions/` beside this file, to commit as a regression test.

use proptest::prelude::*;
use serde_json::{json, Value};
use stoke_asl::intrinsic::{Call, Scope};
use stoke_asl::path::{DataPath, Docs, Path};
use stoke_asl::template::Template;
use stoke_asl::{Definition, SeededEntropy};

fn cases(default: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    ProptestConfig { cases: n, ..ProptestConfig::default() }
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        "[a-z$.\\[\\]*0-9 -]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,3}(\\.\\$)?", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSONPath-like text: mostly the grammar's own pieces, sometimes noise.
fn path_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just(".a".to_string()),
        Just(".b".to_string()),
        Just("['a']".to_string()),
        Just("[0]".to_string()),
        Just("[-1]".to_string()),
        Just("[*]".to_string()),
        Just("..a".to_string()),
        Just("[1:3]".to_string()),
        Just("[?(@.a)]".to_string()),
        Just("[0,1]".to_string()),
        "[\\[\\]'\".*@?():,0-9a-z-]{1,3}",
    ];
    (prop::sample::select(vec!["$", "$$", "", "@", "$."]), prop::collection::vec(piece, 0..5))
        .prop_map(|(root, pieces)| format!("{root}{}", pieces.concat()))
}

fn intrinsic_text() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec![
        "Format",
        "StringToJson",
        "JsonToString",
        "Array",
        "ArrayPartition",
        "ArrayContains",
        "ArrayRange",
        "ArrayGetItem",
        "ArrayLength",
        "ArrayUnique",
        "Base64Encode",
        "Base64Decode",
        "Hash",
        "JsonMerge",
        "MathRandom",
        "MathAdd",
        "StringSplit",
        "UUID",
        "Nope",
    ]);
    let arg = prop_oneof![
        Just("'a{}b'".to_string()),
        Just("'x,y'".to_string()),
        Just("','".to_string()),
        Just("$.a".to_string()),
        Just("$.list".to_string()),
        Just("$$.Execution.Id".to_string()),
        Just("'SHA-256'".to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
        (-5i64..2000).prop_map(|n| n.to_string()),
        Just("1.5".to_string()),
        Just("States.Array(1, 2)".to_string()),
        "[a-z'(),.$ \\\\{}]{0,6}",
    ];
    (name, prop::collection::vec(arg, 0..4)).prop_map(|(n, args)| format!("States.{n}({})", args.join(", ")))
}

proptest! {
    #![proptest_config(cases(1500))]

    /// Any text parses as a path or is refused; a parsed path selects from any document without panicking,
    /// and a definite path finds at most one value.
    #[test]
    fn paths_parse_or_refuse_and_select_from_any_document(text in path_text(), doc in json_value()) {
        if let Ok(path) = Path::parse(&text) {
            let found = path.select(&doc);
            if path.is_definite() {
                prop_assert!(found.len() <= 1, "{text}: {found:?}");
            }
            let _ = path.get(&doc);
            let _ = path.set(doc.clone(), json!(1));
        }
        let _ = Path::parse_reference(&text);
        if let Ok(path) = DataPath::parse(&text) {
            let context = json!({"Execution": {"Id": "x"}});
            let vars = json!({"a": doc.clone()});
            let _ = path.get(&Docs { input: &doc, context: &context, vars: vars.as_object().unwrap() });
        }
    }

    /// Arbitrary text never panics the path parser either.
    #[test]
    fn any_text_is_a_path_or_a_clear_refusal(text in "\\PC{0,16}") {
        if let Err(e) = Path::parse(&text) {
            prop_assert!(!e.to_string().is_empty());
        }
        let _ = DataPath::parse(&text);
    }

    /// Intrinsic calls parse or are refused, and evaluate to a value or an error, on any input.
    #[test]
    fn intrinsic_calls_evaluate_or_fail_cleanly(text in intrinsic_text(), input in json_value(), seed in any::<u64>()) {
        if let Ok(call) = Call::parse(&text) {
            let context = json!({"Execution": {"Id": "arn:x"}});
            let mut entropy = SeededEntropy::new(seed);
            let input = json!({"a": input, "list": [1, 2, 2, 3]});
            let vars = serde_json::Map::new();
            let docs = Docs { input: &input, context: &context, vars: &vars };
            let mut scope = Scope { docs, entropy: &mut entropy };
            let _ = call.eval(&mut scope);
        }
    }

    /// Payload templates compile or are refused, and evaluate on any input.
    #[test]
    fn templates_compile_or_refuse_and_evaluate(template in json_value(), input in json_value()) {
        if let Ok(t) = Template::compile(&template) {
            let context = json!({});
            let mut entropy = SeededEntropy::new(1);
            let vars = serde_json::Map::new();
            let docs = Docs { input: &input, context: &context, vars: &vars };
            let mut scope = Scope { docs, entropy: &mut entropy };
            let _ = t.eval(&mut scope);
        }
    }

    /// A state machine definition built from arbitrary JSON, or a corpus definition with one field
    /// replaced by arbitrary JSON, parses or is refused with problems; never a panic.
    #[test]
    fn definitions_parse_or_list_their_problems(
        corpus in 0usize..50,
        state_field in prop::sample::select(vec!["Type", "Next", "End", "Parameters", "ResultPath", "InputPath",
            "Choices", "Retry", "Catch", "Branches", "ItemProcessor", "Iterator", "Seconds", "Resource",
            "ResultSelector", "OutputPath", "Default", "MaxConcurrency", "ItemsPath", "TimeoutSeconds"]),
        value in json_value(),
        garbage in json_value(),
    ) {
        let _ = Definition::parse(&garbage);
        let mut def = corpus_definition(corpus);
        if let Some(states) = def["States"].as_object_mut() {
            if let Some(first) = states.values_mut().next() {
                first[state_field] = value;
            }
        }
        if let Err(problems) = Definition::parse(&def) {
            prop_assert!(!problems.is_empty());
        }
        let _ = Definition::parse_str(&def.to_string());
    }
}

/// The `n`th state machine of tests/asl-corpus (by file name).
fn corpus_definition(n: usize) -> Value {
    static CORPUS: std::sync::OnceLock<Vec<Value>> = std::sync::OnceLock::new();
    let all = CORPUS.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/asl-corpus");
        let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
        files.sort();
        files
            .iter()
            .map(|f| serde_json::from_slice::<Value>(&std::fs::read(f).unwrap()).unwrap()["definition"].clone())
            .collect()
    });
    all[n % all.len()].clone()
}
