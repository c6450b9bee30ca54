use super::*;

fn env(vars: Value) -> Env {
    let vars = vars.as_object().cloned().unwrap_or_default();
    Env::new(states(&json!({"n": 3, "items": [1, 2, 3]}), &json!({"State": {"Name": "S"}}), None, None), &vars, 7, 0)
}

fn eval(text: &str) -> Result<Value, Failure> {
    eval_with(text, json!({}))
}

fn eval_with(text: &str, vars: Value) -> Result<Value, Failure> {
    Shape::compile(&json!(text)).map_err(|e| Failure::new("compile", e.1))?.eval(&env(vars), "Output")
}

#[test]
fn only_whole_strings_between_the_marks_are_expressions() {
    assert_eq!(expression_text("{% 1 + 1 %}"), Some(" 1 + 1 "));
    for literal in [" {% 1 %}", "{% 1 %} ", "{ % 1 % }", "$.x", "{%"] {
        assert_eq!(expression_text(literal), None, "{literal}");
        assert_eq!(Shape::compile(&json!(literal)).unwrap(), Shape::Literal(json!(literal)));
    }
}

#[test]
fn expressions_read_states_and_variables() {
    assert_eq!(eval("{% $states.input.n * 2 %}").unwrap(), json!(6));
    assert_eq!(eval("{% $states.context.State.Name %}").unwrap(), json!("S"));
    assert_eq!(eval_with("{% $x & '!' %}", json!({"x": "hi"})).unwrap(), json!("hi!"));
    assert_eq!(eval("{% $sum($states.input.items) %}").unwrap(), json!(6));
}

#[test]
fn shapes_evaluate_every_expression_inside_objects_and_arrays() {
    let shape =
        Shape::compile(&json!({"a": "{% $states.input.n %}", "b": ["lit", "{% 'x' %}"], "c": {"d": 1}})).unwrap();
    assert_eq!(shape.keys(), vec!["a", "b", "c"]);
    assert_eq!(shape.eval(&env(json!({})), "Arguments").unwrap(), json!({"a": 3, "b": ["lit", "x"], "c": {"d": 1}}));
    // All literal: kept as it is.
    assert_eq!(Shape::compile(&json!({"a": [1, "b"]})).unwrap(), Shape::Literal(json!({"a": [1, "b"]})));
}

#[test]
fn failures_name_the_expression_and_the_field_as_step_functions_does() {
    let shape = Shape::compile(&json!({"FunctionName": "{% $states.input.missing %}"})).unwrap();
    let f = shape.eval(&env(json!({})), "Arguments").unwrap_err();
    assert_eq!(f.error, QUERY_EVALUATION_ERROR);
    assert_eq!(
        f.cause,
        "The JSONata expression '$states.input.missing' specified for the field 'Arguments/FunctionName' returned \
         nothing (undefined)."
    );
    let f = eval("{% $nothing() %}").unwrap_err();
    assert_eq!(
        f.cause,
        "The JSONata expression '$nothing()' specified for the field 'Output' threw an error during evaluation. \
         T1006: Attempted to invoke a non-function"
    );
    // Step Functions offers $parse, not $eval.
    assert!(eval("{% $eval('1') %}").unwrap_err().cause.contains("T1006"), "$eval must be unavailable");
}

#[test]
fn a_syntax_error_is_found_at_compile_time_with_its_code() {
    let (at, message) = Shape::compile(&json!({"a": ["{% 1 + %}"]})).unwrap_err();
    assert_eq!(at, "/a/0");
    assert!(message.contains("'1 +'") && message.contains("S0207"), "{message}");
    assert!(Shape::compile(&json!("{%  %}")).unwrap_err().1.contains("empty"));
}

#[test]
fn step_functions_functions_behave_as_recorded_on_aws() {
    let cases = [
        ("{% $partition([0,1,2], 2) %}", json!([[0, 1], [2]])),
        ("{% $partition([0], 5) %}", json!([[0]])),
        ("{% $range(0, 9, 3) %}", json!([0, 3, 6, 9])),
        ("{% $range(0, 10, 3) %}", json!([0, 3, 6, 9])),
        ("{% $range(1, 9, 9) %}", json!(1)),
        ("{% $range(5, 1, 1) %}", json!([])),
        ("{% $range(3, 1, -1) %}", json!([3, 2, 1])),
        ("{% $hash('abc', 'MD5') %}", json!("900150983cd24fb0d6963f7d28e17f72")),
        ("{% $hash('input data', 'SHA-1') %}", json!("aaff4a450a104cd177d28d18d74485e8cae074b7")),
        ("{% $parse('-0') %}", json!(0)),
        ("{% $parse('1.1') %}", json!(1.1)),
        ("{% $parse('\"HelloWorld\"') %}", json!("HelloWorld")),
        ("{% $parse('{\"a\":[1]}') %}", json!({"a": [1]})),
    ];
    for (text, want) in cases {
        assert_eq!(eval(text).unwrap(), want, "{text}");
    }
    for (text, why) in [
        ("{% $partition([1], 0) %}", "positive"),
        ("{% $range(0, 1, 0) %}", "step cannot be 0"),
        ("{% $range(0, 1e9, 1) %}", "more than"),
        ("{% $hash('a', 'CRC32') %}", "unknown algorithm"),
        ("{% $parse('{') %}", "not JSON"),
    ] {
        let f = eval(text).unwrap_err();
        assert!(f.cause.contains(why), "{text}: {}", f.cause);
    }
}

#[test]
fn random_and_uuid_follow_the_seed() {
    let r = eval("{% $random() %}").unwrap().as_f64().unwrap();
    assert!((0.0..1.0).contains(&r));
    assert_eq!(eval("{% $random() %}").unwrap(), json!(r), "the same seed gives the same number");
    let seeded = eval("{% [$random(42), $random(42)] %}").unwrap();
    assert_eq!(seeded[0], seeded[1], "a seeded $random is a function of its seed");
    let ids = eval("{% [$uuid(), $uuid()] %}").unwrap();
    let (a, b) = (ids[0].as_str().unwrap(), ids[1].as_str().unwrap());
    assert_ne!(a, b);
    assert_eq!(a.len(), 36);
    assert_eq!(&a[14..15], "4");
}

#[test]
fn runaway_expressions_stop_with_a_jsonata_error() {
    let f = eval("{% ($f := function($n) { 1 + $f($n + 1) }; $f(0)) %}").unwrap_err();
    assert_eq!(f.error, QUERY_EVALUATION_ERROR);
    assert!(f.cause.contains("D1011") || f.cause.contains("U1001"), "{}", f.cause);
}
