use super::*;
use crate::definition::Definition;
use crate::intrinsic::SeededEntropy;
use crate::StateKind;
use serde_json::json;

fn context(state: &str) -> Context {
    Context {
        execution_id: "arn:exec".into(),
        execution_name: "exec".into(),
        execution_input: json!({}),
        execution_start_time: "2024-01-01T00:00:00.000Z".into(),
        role_arn: "arn:aws:iam::123456789012:role/flows".into(),
        state_machine_id: "arn:sm".into(),
        state_machine_name: "sm".into(),
        state_name: state.into(),
        state_entered_time: "2024-01-01T00:00:00.000Z".into(),
        retry_count: Some(0),
        map_item: None,
    }
}

fn state(v: Value) -> State {
    let mut states = json!({"S": v});
    if v.to_string().contains("\"N\"") {
        states["N"] = json!({"Type": "Succeed"});
    }
    let d = Definition::parse(&json!({"StartAt": "S", "States": states})).unwrap();
    d.machine.states["S"].clone()
}

fn enter_with(s: &State, input: Value) -> Entry {
    enter(s, &input, &context("S"), &Vars::new(), &mut SeededEntropy::new(3), 1_000_000_000)
}

#[test]
fn pass_applies_the_processing_order() {
    let s = state(json!({"Type": "Pass", "InputPath": "$.a", "Parameters": {"v.$": "$.b"},
                         "ResultPath": "$.out", "OutputPath": "$.out", "Next": "N"}));
    assert_eq!(
        enter_with(&s, json!({"a": {"b": 7}})),
        Entry::Done { output: json!({"v": 7}), next: Some("N".into()), assigned: None }
    );
    let s = state(json!({"Type": "Pass", "Result": {"r": 1}, "ResultPath": "$.x", "End": true}));
    assert_eq!(
        enter_with(&s, json!({"k": 0})),
        Entry::Done { output: json!({"k": 0, "x": {"r": 1}}), next: None, assigned: None }
    );
    let s = state(json!({"Type": "Pass", "ResultPath": null, "Result": 5, "OutputPath": null, "End": true}));
    assert_eq!(enter_with(&s, json!({"k": 0})), Entry::Done { output: json!({}), next: None, assigned: None });
}

#[test]
fn choice_picks_first_match_then_default_then_fails() {
    let s = state(json!({"Type": "Choice", "Choices": [
        {"Variable": "$.n", "NumericLessThan": 0, "Next": "N"},
        {"Variable": "$.n", "NumericGreaterThan": 10, "Next": "S"}]}));
    assert_eq!(
        enter_with(&s, json!({"n": -1})),
        Entry::Done { output: json!({"n": -1}), next: Some("N".into()), assigned: None }
    );
    match enter_with(&s, json!({"n": 5})) {
        Entry::Failed(f) => assert_eq!(f.error, "States.NoChoiceMatched"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn wait_computes_the_deadline() {
    let s = state(json!({"Type": "Wait", "SecondsPath": "$.s", "Next": "N"}));
    assert_eq!(
        enter_with(&s, json!({"s": 2})),
        Entry::WaitUntil { until_ns: 3_000_000_000, output: json!({"s": 2}), next: Some("N".into()), assigned: None }
    );
    assert!(matches!(enter_with(&s, json!({"s": "x"})), Entry::Failed(f) if f.error == "States.Runtime"));
    let s = state(json!({"Type": "Wait", "Timestamp": "1970-01-01T00:00:05Z", "Next": "N"}));
    assert!(matches!(enter_with(&s, json!({})), Entry::WaitUntil { until_ns: 5_000_000_000, .. }));
}

/// The causes Step Functions gives (recorded against AWS), and its longest wait: 2^31 seconds.
#[test]
fn wait_failures_say_what_step_functions_says() {
    let cause = |s: &State, input: Value| match enter_with(s, input) {
        Entry::Failed(f) if f.error == "States.Runtime" => f.cause,
        other => panic!("{other:?}"),
    };
    let s = state(json!({"Type": "Wait", "SecondsPath": "$.input.waitSeconds", "Next": "N"}));
    let wait = |w: Value| json!({"input": {"waitSeconds": w}});
    assert_eq!(
        cause(&s, wait(json!(-1))),
        "The SecondsPath parameter references a negative value: $.input.waitSeconds == -1"
    );
    assert_eq!(
        cause(&s, wait(json!(1.5))),
        "The SecondsPath parameter cannot be parsed as a long value: $.input.waitSeconds == 1.5"
    );
    assert_eq!(
        cause(&s, json!({})),
        "The SecondsPath parameter does not reference an input value: $.input.waitSeconds"
    );
    let limit = 1u64 << 31;
    assert!(matches!(enter_with(&s, wait(json!(limit))), Entry::WaitUntil { .. }));
    assert_eq!(cause(&s, wait(json!(limit + 1))), "Wait state delay is too long.");
    let s = state(json!({"Type": "Wait", "TimestampPath": "$.TimestampValue", "Next": "N"}));
    assert_eq!(
        cause(&s, json!({"TimestampValue": "2016-12-05T21:29:29"})),
        "The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: \
         $.TimestampValue == 2016-12-05T21:29:29"
    );
    let far = "9999-01-01T00:00:00Z";
    assert_eq!(cause(&s, json!({"TimestampValue": far})), "Wait state delay is too long.");
}

#[test]
fn tasks_build_payloads_and_lambda_invoke_unwraps() {
    let s = state(
        json!({"Type": "Task", "Resource": "fn:live", "Parameters": {"id.$": "$.id"}, "TimeoutSeconds": 9, "HeartbeatSeconds": 2, "End": true}),
    );
    assert_eq!(
        enter_with(&s, json!({"id": 1})),
        Entry::Invoke {
            function: "fn:live".into(),
            qualifier: None,
            payload: json!({"id": 1}),
            timeout_seconds: 9,
            timeout_given: true,
            heartbeat_seconds: Some(2),
            wrap: false,
            parameters: None,
        }
    );
    let s = state(json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "g", "Qualifier": "3", "Payload.$": "$"}, "End": true}));
    assert_eq!(
        enter_with(&s, json!({"id": 1})),
        Entry::Invoke {
            function: "g".into(),
            qualifier: Some("3".into()),
            payload: json!({"id": 1}),
            timeout_seconds: 60,
            timeout_given: false,
            heartbeat_seconds: None,
            wrap: true,
            parameters: Some(json!({"FunctionName": "g", "Qualifier": "3", "Payload": {"id": 1}})),
        }
    );
}

/// Recorded on Step Functions (localstack's snapshot `test_invoke_json_values`): a Payload string is the
/// body as it is; null or none sends `{}`.
#[test]
fn a_lambda_invoke_payload_is_sent_as_step_functions_sends_it() {
    let cases = [
        (json!("\"HelloWorld\""), json!("HelloWorld")),
        (json!("0.0"), json!(0.0)),
        (json!("0"), json!(0)),
        (json!("true"), json!(true)),
        (json!("[]"), json!([])),
        (json!("{}"), json!({})),
        (json!("null"), json!(null)),
        (json!(null), json!({})),
        (json!("not json"), json!("not json")),
        (json!({"a": [1]}), json!({"a": [1]})),
        (json!(7), json!(7)),
    ];
    for (payload, sent) in cases {
        assert_eq!(lambda_invoke_payload(&json!({"FunctionName": "f", "Payload": payload})), sent, "{payload}");
    }
    assert_eq!(lambda_invoke_payload(&json!({"FunctionName": "f"})), json!({}), "no Payload");
}

#[test]
fn finish_selects_places_and_catches() {
    let s = state(json!({"Type": "Task", "Resource": "f", "ResultSelector": {"v.$": "$.value"}, "ResultPath": "$.r",
        "Catch": [{"ErrorEquals": ["Custom"], "Next": "N", "ResultPath": "$.err"}], "Next": "N"}));
    let ctx = context("S");
    let mut e = SeededEntropy::new(1);
    assert_eq!(
        finish(&s, &json!({"in": 1}), Ok(json!({"value": 2, "junk": 0})), &ctx, &Vars::new(), &mut e),
        Outcome::Next { output: json!({"in": 1, "r": {"v": 2}}), next: Some("N".into()), assigned: None }
    );
    assert_eq!(
        finish(&s, &json!({"in": 1}), Err(Failure::new("Custom", "why")), &ctx, &Vars::new(), &mut e),
        Outcome::Next {
            output: json!({"in": 1, "err": {"Error": "Custom", "Cause": "why"}}),
            next: Some("N".into()),
            assigned: None
        }
    );
    assert_eq!(
        finish(&s, &json!({"in": 1}), Err(Failure::new("Other", "why")), &ctx, &Vars::new(), &mut e),
        Outcome::Failed(Failure::new("Other", "why"))
    );
    match finish(&s, &json!("not an object"), Ok(json!({"value": 1})), &ctx, &Vars::new(), &mut e) {
        Outcome::Failed(f) => assert_eq!(f.error, "States.ResultPathMatchFailure"),
        other => panic!("{other:?}"),
    }
    match finish(&s, &json!({}), Ok(json!({"no": 1})), &ctx, &Vars::new(), &mut e) {
        Outcome::Failed(f) => assert_eq!(f.error, "States.ParameterPathFailure"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn map_shapes_items_with_the_context() {
    let s = state(
        json!({"Type": "Map", "ItemsPath": "$.xs", "ItemSelector": {"i.$": "$$.Map.Item.Index", "v.$": "$$.Map.Item.Value", "k.$": "$.k"},
        "MaxConcurrency": 3, "ToleratedFailurePercentage": 50,
        "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Succeed"}}}, "End": true}),
    );
    assert_eq!(
        enter_with(&s, json!({"xs": ["a", "b"], "k": 0})),
        Entry::Map {
            items: vec![json!({"i": 0, "v": "a", "k": 0}), json!({"i": 1, "v": "b", "k": 0})],
            max_concurrency: 3,
            tolerated_failures: Some(1),
            batches: Vec::new(),
            tolerance: Tolerance { count: None, percentage: Some(50.0) },
            reader: None,
            writer: None,
        }
    );
    assert!(matches!(enter_with(&s, json!({"xs": 1})), Entry::Failed(f) if f.cause.contains("not an array")));
    let ok = map_result(vec![Ok(json!(1)), Err(Failure::new("E", "c"))], Some(1)).unwrap();
    assert_eq!(ok, json!([1, {"Error": "E", "Cause": "c"}]));
    let err = map_result(vec![Err(Failure::new("E", "c")), Err(Failure::new("E", "d"))], Some(1)).unwrap_err();
    assert_eq!(err.error, "States.ExceedToleratedFailureThreshold");
    assert_eq!(map_result(vec![Err(Failure::new("E", "c"))], None).unwrap_err().error, "E");
}

#[test]
fn fail_reads_error_and_cause() {
    let s = state(json!({"Type": "Fail", "ErrorPath": "$.e", "Cause": "static"}));
    assert_eq!(enter_with(&s, json!({"e": "Mine"})), Entry::Failed(Failure::new("Mine", "static")));
    assert!(matches!(enter_with(&s, json!({"e": 1})), Entry::Failed(f) if f.error == "States.Runtime"));
}

#[test]
fn function_errors_become_asl_errors() {
    let f = function_error(&json!({"errorType": "ValueError", "errorMessage": "bad"}));
    assert_eq!(f.error, "ValueError");
    assert!(f.cause.contains("\"errorMessage\":\"bad\""));
    assert_eq!(function_error(&json!("oops")).error, "Lambda.Unknown");
}

/// A Map's counts from paths: Step Functions' causes (recorded against AWS), and a fractional percentage.
#[test]
fn map_counts_from_paths_fail_as_step_functions_says() {
    let map = |extra: Value| {
        let mut m = json!({"Type": "Map", "ItemsPath": "$.xs", "End": true,
            "ItemProcessor": {"StartAt": "Inner", "States": {"Inner": {"Type": "Succeed"}}}});
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        state(m)
    };
    let cause = |s: &State, input: Value| match enter_with(s, input) {
        Entry::Failed(f) if f.error == "States.Runtime" => f.cause,
        other => panic!("{other:?}"),
    };
    let s = map(json!({"MaxConcurrencyPath": "$.MaxConcurrencyValue"}));
    assert_eq!(
        cause(&s, json!({"xs": [1], "MaxConcurrencyValue": "NoNumber"})),
        "The MaxConcurrencyPath field refers to value \"NoNumber\" which is not a valid integer: $.MaxConcurrencyValue"
    );
    let s = map(json!({"ToleratedFailureCountPath": "$.ToleratedFailureCount"}));
    assert_eq!(
        cause(&s, json!({"xs": [1], "ToleratedFailureCount": {}})),
        "The ToleratedFailureCountPath field refers to value \"{}\" which is not a valid integer: $.ToleratedFailureCount"
    );
    assert_eq!(cause(&s, json!({"xs": [1], "ToleratedFailureCount": -1})), "ToleratedFailureCount cannot be negative.");
    let s = map(json!({"ToleratedFailurePercentagePath": "$.p"}));
    assert_eq!(
        cause(&s, json!({"xs": [1], "p": "NoNumber"})),
        "The ToleratedFailurePercentagePath field refers to value \"NoNumber\" which is not a valid float: $.p"
    );
    for bad in [json!(-1), json!(-1.1), json!(100.1)] {
        assert_eq!(cause(&s, json!({"xs": [1], "p": bad})), "ToleratedFailurePercentage must be between 0 and 100.");
    }
    // A fraction is allowed: 15.5% of 10 items tolerates 1 failure (the whole ones within it).
    let xs: Vec<u32> = (0..10).collect();
    match enter_with(&s, json!({"xs": xs, "p": 15.5})) {
        Entry::Map { tolerated_failures, .. } => assert_eq!(tolerated_failures, Some(1)),
        other => panic!("{other:?}"),
    }
    let over = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true, "ToleratedFailurePercentage": 100.1,
        "ItemProcessor": {"StartAt": "Inner", "States": {"Inner": {"Type": "Succeed"}}}}}});
    let problems = Definition::parse(&over).unwrap_err();
    assert!(problems.iter().any(|p| p.message.contains("from 0 to 100")), "{problems:?}");
    let s = map(json!({"ToleratedFailurePercentage": 25.5}));
    match enter_with(&s, json!({"xs": xs})) {
        Entry::Map { tolerated_failures, .. } => assert_eq!(tolerated_failures, Some(2)),
        other => panic!("{other:?}"),
    }
}

/// With both a count and a percentage, exceeding either fails the Map (the States Language's rule).
#[test]
fn tolerance_is_the_stricter_of_count_and_percentage() {
    let t = |count, percentage| Tolerance { count, percentage };
    assert_eq!(t(None, None).tolerated(10), None);
    assert_eq!(t(Some(3), None).tolerated(10), Some(3));
    assert_eq!(t(None, Some(25.0)).tolerated(10), Some(2));
    assert_eq!(t(Some(1), Some(50.0)).tolerated(10), Some(1), "the count is stricter");
    assert_eq!(t(Some(8), Some(50.0)).tolerated(10), Some(5), "the percentage is stricter");
    assert_eq!(t(None, Some(100.0)).tolerated(7), Some(7), "100% never fails");
}

/// A distributed Map batches its (selected) items in order, by count and by bytes, each batch a child's
/// input with the evaluated BatchInput; a path may give a limit as a string of digits (recorded on AWS).
#[test]
fn distributed_maps_batch_items_by_count_and_bytes() {
    let s = state(json!({"Type": "Map", "ItemsPath": "$.xs", "End": true,
        "ItemSelector": {"v.$": "$$.Map.Item.Value"},
        "ItemBatcher": {"MaxItemsPerBatchPath": "$.per", "BatchInput": {"run.$": "$.run"}},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "I", "States": {"I": {"Type": "Succeed"}}}}));
    match enter_with(&s, json!({"xs": [1, 2, 3, 4, 5], "per": "2", "run": "r1"})) {
        Entry::Map { items, batches, .. } => {
            assert_eq!(batches, vec![2, 2, 1]);
            assert_eq!(items[0], json!({"BatchInput": {"run": "r1"}, "Items": [{"v": 1}, {"v": 2}]}));
            assert_eq!(items[2], json!({"BatchInput": {"run": "r1"}, "Items": [{"v": 5}]}));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(enter_with(&s, json!({"xs": [1], "per": 0, "run": 1})),
        Entry::Failed(f) if f.cause.contains("not a valid positive integer")));
    // By bytes: "aaaa" is 6 bytes of JSON, so two fit in 12 and a third starts the next batch.
    let (inputs, sizes) = batch(vec![json!("aaaa"), json!("bbbb"), json!("cccc")], None, Some(12), None);
    assert_eq!(sizes, vec![2, 1]);
    assert_eq!(inputs[1], json!({"Items": ["cccc"]}));
    // An item larger than the limit goes alone rather than nowhere.
    let (_, sizes) = batch(vec![json!("a-long-item"), json!("b")], None, Some(4), None);
    assert_eq!(sizes, vec![1, 1]);
    let (inputs, sizes) = batch(Vec::new(), Some(2), None, None);
    assert!(inputs.is_empty() && sizes.is_empty());
}

/// A distributed Map's definition: its label, execution type, batcher, and the processor its children run.
#[test]
fn distributed_map_definitions_are_checked() {
    let machine = |map: Value| json!({"StartAt": "M", "States": {"M": map}});
    let map = |extra: Value| {
        let mut m = json!({"Type": "Map", "End": true, "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED"}, "StartAt": "I", "States": {"I": {"Type": "Pass", "End": true}}}});
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        m
    };
    let d = Definition::parse(&machine(map(json!({"Label": "Orders"})))).unwrap();
    let StateKind::Map(m) = &d.machine.states["M"].kind else { panic!() };
    let dist = m.distributed.as_ref().unwrap();
    assert_eq!((dist.label.as_deref(), dist.execution_type.as_str()), (Some("Orders"), "STANDARD"));
    assert_eq!(dist.definition, json!({"StartAt": "I", "States": {"I": {"Type": "Pass", "End": true}}}));
    let problems = |extra: Value| Definition::parse(&machine(map(extra))).unwrap_err();
    for (extra, needle) in [
        (json!({"Label": "has space"}), "Label cannot contain"),
        (json!({"Label": "x".repeat(41)}), "cannot exceed 40"),
        (json!({"Label": "a:b"}), "Label cannot contain ':'"),
        (json!({"ItemBatcher": {}}), "needs MaxItemsPerBatch"),
        (json!({"ItemBatcher": {"MaxItemsPerBatch": 0}}), "at least 1"),
        (json!({"ItemBatcher": {"MaxItemsPerBatch": 2, "MaxItemsPerBatchPath": "$.n"}}), "cannot both be set"),
    ] {
        let p = problems(extra.clone());
        assert!(p.iter().any(|p| p.message.contains(needle)), "{extra}: {p:?}");
    }
    let inline = json!({"Type": "Map", "End": true, "ItemBatcher": {"MaxItemsPerBatch": 2},
        "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": true}}}});
    let p = Definition::parse(&machine(inline)).unwrap_err();
    assert!(p.iter().any(|p| p.message.contains("needs a distributed Map")), "{p:?}");
    let bad_type = map(json!({}));
    let mut bad_type = bad_type;
    bad_type["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] = json!("FAST");
    let p = Definition::parse(&machine(bad_type)).unwrap_err();
    assert!(p.iter().any(|p| p.message.contains("STANDARD or EXPRESS")), "{p:?}");
}

/// A distributed Map's reader and writer are function calls, their Parameters evaluated against the state's
/// input; S3 sources, and either on an inline Map, are refused with what to do instead.
#[test]
fn distributed_map_readers_and_writers_call_functions() {
    let s = state(json!({"Type": "Map", "End": true, "ItemsPath": "$.ignored",
        "ItemReader": {"Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "lister", "Payload": {"prefix.$": "$.prefix"}},
            "ReaderConfig": {"MaxItemsPath": "$.max"}},
        "ResultWriter": {"Resource": "arn:aws:lambda:us-east-1:123456789012:function:archive",
            "Parameters": {"run.$": "$.prefix"}},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED"},
            "StartAt": "I", "States": {"I": {"Type": "Succeed"}}}}));
    match enter_with(&s, json!({"prefix": "p/", "max": 5})) {
        Entry::Map { items, reader: Some(r), writer: Some(w), .. } => {
            assert!(items.is_empty(), "the reader gives the items, not ItemsPath");
            assert_eq!(
                (r.call.function.as_str(), &r.call.payload, r.max_items),
                ("lister", &json!({"prefix": "p/"}), 5)
            );
            assert_eq!(r.input, json!({"prefix": "p/", "max": 5}));
            assert_eq!(w.function, "arn:aws:lambda:us-east-1:123456789012:function:archive");
            assert_eq!(w.payload, json!({"run": "p/"}));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(enter_with(&s, json!({"prefix": "p/", "max": 1.5})),
        Entry::Failed(f) if f.cause.contains("MaxItemsPath field refers to value \"1.5\"")));
    let machine = |map: Value| json!({"StartAt": "M", "States": {"M": map}});
    let s3 = json!({"Type": "Map", "End": true, "ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "JSON"}, "Parameters": {"Bucket": "b", "Key": "k"}},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED"}, "StartAt": "I", "States": {"I": {"Type": "Succeed"}}}});
    let p = Definition::parse(&machine(s3)).unwrap_err();
    assert!(p.iter().any(|p| p.code == "UNSUPPORTED_FEATURE" && p.message.contains("stoke has no S3")), "{p:?}");
    let inline = json!({"Type": "Map", "End": true, "ResultWriter": {"Resource": "f"},
        "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Succeed"}}}});
    let p = Definition::parse(&machine(inline)).unwrap_err();
    assert!(p.iter().any(|p| p.message.contains("ResultWriter needs a distributed Map")), "{p:?}");
}

fn jsonata_state(mut v: Value) -> State {
    v["QueryLanguage"] = json!("JSONata");
    state(v)
}

fn vars(v: Value) -> Vars {
    v.as_object().cloned().unwrap_or_default()
}

fn enter_vars(s: &State, input: Value, vars: &Vars) -> Entry {
    enter(s, &input, &context("S"), vars, &mut SeededEntropy::new(3), 1_000_000_000)
}

#[test]
fn jsonata_pass_outputs_and_assigns_from_the_values_on_entry() {
    let s = jsonata_state(json!({"Type": "Pass", "Next": "N",
        "Assign": {"x": "{% $y %}", "y": "{% $x %}", "n": "{% $states.input.n + 1 %}"},
        "Output": {"sum": "{% $x + $y %}", "name": "{% $states.context.State.Name %}"}}));
    let entry = enter_vars(&s, json!({"n": 1}), &vars(json!({"x": 1, "y": 10})));
    assert_eq!(
        entry,
        Entry::Done {
            output: json!({"sum": 11, "name": "S"}),
            next: Some("N".into()),
            assigned: Some(vars(json!({"x": 10, "y": 1, "n": 2}))),
        },
        "both assignments read the values the state was entered with (a swap works)"
    );
    // Without Output a Pass passes its input on.
    let s = jsonata_state(json!({"Type": "Pass", "End": true}));
    assert_eq!(
        enter_vars(&s, json!({"a": 1}), &Vars::new()),
        Entry::Done { output: json!({"a": 1}), next: None, assigned: None }
    );
}

#[test]
fn jsonata_undefined_and_wrong_types_fail_with_query_evaluation_error() {
    let s = jsonata_state(json!({"Type": "Pass", "End": true, "Output": {"v": "{% $states.input.missing %}"}}));
    let Entry::Failed(f) = enter_vars(&s, json!({}), &Vars::new()) else { panic!("must fail") };
    assert_eq!(f.error, "States.QueryEvaluationError");
    assert!(f.cause.contains("'Output/v' returned nothing (undefined)"), "{}", f.cause);
    let s = jsonata_state(json!({"Type": "Map", "End": true, "Items": "{% $states.input %}",
        "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Succeed"}}}}));
    let Entry::Failed(f) = enter_vars(&s, json!({"foo": "bar"}), &Vars::new()) else { panic!("must fail") };
    assert_eq!(
        f.cause,
        "The JSONata expression '$states.input' specified for the field 'Items' returned an unexpected result type. \
         Expected 'array', but was 'object' for value: {\"foo\":\"bar\"}"
    );
    let s = jsonata_state(json!({"Type": "Wait", "Seconds": "{% 'soon' %}", "Next": "N"}));
    let Entry::Failed(f) = enter_vars(&s, json!({}), &Vars::new()) else { panic!("must fail") };
    assert!(f.cause.contains("Expected 'non-negative integer'"), "{}", f.cause);
}

#[test]
fn jsonata_task_takes_arguments_and_outputs_from_its_result() {
    let s = jsonata_state(json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Next": "N",
        "Arguments": {"FunctionName": "{% 'fn-' & $suffix %}", "Payload": {"n": "{% $states.input.n %}"}},
        "TimeoutSeconds": "{% $states.input.n * 10 %}",
        "Output": {"got": "{% $states.result.Payload %}", "was": "{% $states.input.n %}"},
        "Assign": {"last": "{% $states.result.Payload %}"}}));
    let v = vars(json!({"suffix": "a"}));
    match enter_vars(&s, json!({"n": 2}), &v) {
        Entry::Invoke { function, payload, timeout_seconds, .. } => {
            assert_eq!((function.as_str(), payload, timeout_seconds), ("fn-a", json!({"n": 2}), 20));
        }
        other => panic!("{other:?}"),
    }
    let out = finish(&s, &json!({"n": 2}), Ok(json!({"Payload": 5})), &context("S"), &v, &mut SeededEntropy::new(1));
    assert_eq!(
        out,
        Outcome::Next {
            output: json!({"got": 5, "was": 2}),
            next: Some("N".into()),
            assigned: Some(vars(json!({"last": 5}))),
        }
    );
    // Without Output the result is the output.
    let s = jsonata_state(json!({"Type": "Task", "Resource": "f", "End": true}));
    let out = finish(&s, &json!({}), Ok(json!([1])), &context("S"), &Vars::new(), &mut SeededEntropy::new(1));
    assert_eq!(out, Outcome::Next { output: json!([1]), next: None, assigned: None });
}

#[test]
fn jsonata_catcher_outputs_the_error_and_assigns() {
    let s = jsonata_state(json!({"Type": "Task", "Resource": "f", "Next": "N",
    "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "N",
               "Assign": {"why": "{% $states.errorOutput.Cause %}", "input": "{% $states.input %}"}},
              ]}));
    let out =
        fail(&s, &json!({"a": 1}), Failure::new("E", "boom"), &context("S"), &Vars::new(), &mut SeededEntropy::new(1));
    assert_eq!(
        out,
        Outcome::Next {
            output: json!({"Error": "E", "Cause": "boom"}),
            next: Some("N".into()),
            assigned: Some(vars(json!({"why": "boom", "input": {"a": 1}}))),
        }
    );
    let s = jsonata_state(json!({"Type": "Task", "Resource": "f", "Next": "N",
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "N", "Output": "{% $states.errorOutput.Error & '!' %}"}]}));
    let out = fail(&s, &json!({}), Failure::new("E", "boom"), &context("S"), &Vars::new(), &mut SeededEntropy::new(1));
    assert_eq!(out, Outcome::Next { output: json!("E!"), next: Some("N".into()), assigned: None });
    // An Output that fails after the task succeeded goes to the catchers too.
    let s = jsonata_state(json!({"Type": "Task", "Resource": "f", "Next": "N", "Output": "{% $nope() %}",
        "Catch": [{"ErrorEquals": ["States.QueryEvaluationError"], "Next": "N"}]}));
    match finish(&s, &json!({}), Ok(json!(1)), &context("S"), &Vars::new(), &mut SeededEntropy::new(1)) {
        Outcome::Next { output, .. } => assert_eq!(output["Error"], "States.QueryEvaluationError"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn jsonata_choice_conditions_pick_the_rule_and_its_assign() {
    let s = jsonata_state(json!({"Type": "Choice", "Default": "N",
        "Choices": [{"Condition": "{% $states.input.n > $limit %}", "Next": "N", "Assign": {"big": true},
                     "Output": {"rule": 1}},
                    {"Condition": false, "Next": "N"}],
        "Assign": {"big": false}}));
    let v = vars(json!({"limit": 5}));
    assert_eq!(
        enter_vars(&s, json!({"n": 9}), &v),
        Entry::Done { output: json!({"rule": 1}), next: Some("N".into()), assigned: Some(vars(json!({"big": true}))) }
    );
    assert_eq!(
        enter_vars(&s, json!({"n": 1}), &v),
        Entry::Done { output: json!({"n": 1}), next: Some("N".into()), assigned: Some(vars(json!({"big": false}))) },
        "the Default takes the state's Assign"
    );
    let s = jsonata_state(json!({"Type": "Choice", "Choices": [{"Condition": "{% 'yes' %}", "Next": "N"}]}));
    let Entry::Failed(f) = enter_vars(&s, json!({}), &Vars::new()) else { panic!("must fail") };
    assert!(f.cause.contains("Expected 'boolean'"), "{}", f.cause);
}

#[test]
fn jsonata_map_items_and_item_selector() {
    let s = jsonata_state(json!({"Type": "Map", "End": true, "Items": "{% $states.input.list %}",
        "ItemSelector": {"i": "{% $states.context.Map.Item.Index %}", "v": "{% $states.context.Map.Item.Value * $k %}"},
        "MaxConcurrency": "{% 1 + 1 %}",
        "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Succeed"}}}}));
    match enter_vars(&s, json!({"list": [1, 2]}), &vars(json!({"k": 10}))) {
        Entry::Map { items, max_concurrency, .. } => {
            assert_eq!(items, vec![json!({"i": 0, "v": 10}), json!({"i": 1, "v": 20})]);
            assert_eq!(max_concurrency, 2);
        }
        other => panic!("{other:?}"),
    }
    let s = jsonata_state(json!({"Type": "Map", "End": true, "Items": [3, 4],
        "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Succeed"}}}}));
    match enter_vars(&s, json!({}), &Vars::new()) {
        Entry::Map { items, .. } => assert_eq!(items, vec![json!(3), json!(4)]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn jsonpath_assign_reads_the_result_with_dollar() {
    let s = state(json!({"Type": "Pass", "Result": {"v": 3}, "ResultPath": "$.r", "Next": "N",
        "Assign": {"lit": "text", "fromResult.$": "$.v", "name.$": "$$.State.Name", "n.$": "States.MathAdd($.v, 1)"}}));
    assert_eq!(
        enter_vars(&s, json!({}), &Vars::new()),
        Entry::Done {
            output: json!({"r": {"v": 3}}),
            next: Some("N".into()),
            assigned: Some(vars(json!({"lit": "text", "fromResult": 3, "name": "S", "n": 4}))),
        }
    );
    let s = state(json!({"Type": "Task", "Resource": "f", "Next": "N", "ResultSelector": {"x.$": "$.a"},
        "Assign": {"raw.$": "$.a"},
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "N", "ResultPath": "$.e", "Assign": {"err.$": "$.Error"}}]}));
    let ctx = context("S");
    let out = finish(&s, &json!({}), Ok(json!({"a": 1})), &ctx, &Vars::new(), &mut SeededEntropy::new(1));
    assert_eq!(
        out,
        Outcome::Next { output: json!({"x": 1}), next: Some("N".into()), assigned: Some(vars(json!({"raw": 1}))) }
    );
    let out = fail(&s, &json!({}), Failure::new("Boom", "c"), &ctx, &Vars::new(), &mut SeededEntropy::new(1));
    assert_eq!(
        out,
        Outcome::Next {
            output: json!({"e": {"Error": "Boom", "Cause": "c"}}),
            next: Some("N".into()),
            assigned: Some(vars(json!({"err": "Boom"}))),
        }
    );
}

/// Variables read through JSONPath (`$name…`) in each kind of field, as recorded on Step Functions (the
/// BASE_REFERENCE_IN_* cases): every read sees the values the state was entered with.
#[test]
fn jsonpath_fields_read_variables() {
    let v = vars(json!({"theAnswer": 42, "answer": "old", "items": [1, 2], "wait": 5, "at": "2030-01-01T00:00:00Z",
                        "errorVar": "Exception", "causeVar": "An Exception was encountered", "doc": {"k": [7, 8]},
                        "guess": "a", "truth": "a"}));
    let s = state(json!({"Type": "Pass", "InputPath": "$theAnswer", "End": true}));
    assert_eq!(enter_vars(&s, json!({}), &v), Entry::Done { output: json!(42), next: None, assigned: None });
    // OutputPath reads the variable as it was when the state was entered, not what its Assign sets.
    let s = state(json!({"Type": "Pass", "OutputPath": "$answer", "Assign": {"answer": "new"}, "End": true}));
    assert_eq!(
        enter_vars(&s, json!({}), &v),
        Entry::Done { output: json!("old"), next: None, assigned: Some(vars(json!({"answer": "new"}))) }
    );
    let s = state(json!({"Type": "Pass", "End": true, "Parameters": {
        "k.$": "$doc.k[1]", "n.$": "States.MathAdd($theAnswer, 1)", "f.$": "States.Format('{}!', $answer)"}}));
    assert_eq!(
        enter_vars(&s, json!({}), &v),
        Entry::Done { output: json!({"k": 8, "n": 43, "f": "old!"}), next: None, assigned: None }
    );
    let s = state(json!({"Type": "Choice", "Default": "N",
        "Choices": [{"Variable": "$guess", "StringEqualsPath": "$truth", "Next": "S"}]}));
    assert!(matches!(enter_vars(&s, json!({}), &v), Entry::Done { next: Some(n), .. } if n == "S"));
    let s = state(json!({"Type": "Fail", "ErrorPath": "$errorVar", "CausePath": "$causeVar"}));
    assert_eq!(enter_vars(&s, json!({}), &v), Entry::Failed(Failure::new("Exception", "An Exception was encountered")));
    let s = state(json!({"Type": "Wait", "SecondsPath": "$wait", "Next": "N"}));
    assert!(matches!(enter_vars(&s, json!({}), &v), Entry::WaitUntil { until_ns: 6_000_000_000, .. }));
    let s = state(json!({"Type": "Wait", "TimestampPath": "$at", "Next": "N"}));
    assert!(matches!(enter_vars(&s, json!({}), &v), Entry::WaitUntil { .. }));
    let s = state(json!({"Type": "Map", "ItemsPath": "$items", "MaxConcurrencyPath": "$wait", "End": true,
        "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Succeed"}}}}));
    let Entry::Map { items, max_concurrency, .. } = enter_vars(&s, json!({}), &v) else { panic!("a Map") };
    assert_eq!((items, max_concurrency), (vec![json!(1), json!(2)], 5));
    let s = state(json!({"Type": "Task", "Resource": "f", "TimeoutSecondsPath": "$wait", "End": true}));
    assert!(matches!(enter_vars(&s, json!({}), &v), Entry::Invoke { timeout_seconds: 5, .. }));
}

#[test]
fn a_variable_no_state_assigned_fails_the_state_and_is_absent_to_a_choice() {
    let s = state(json!({"Type": "Pass", "InputPath": "$nothing", "End": true}));
    let Entry::Failed(f) = enter_vars(&s, json!({}), &Vars::new()) else { panic!("must fail") };
    assert_eq!(f.error, "States.Runtime");
    assert!(f.cause.contains("'$nothing'") && f.cause.contains("no state has assigned"), "{}", f.cause);
    let s = state(json!({"Type": "Pass", "End": true, "Parameters": {"v.$": "$nothing.x"}}));
    let Entry::Failed(f) = enter_vars(&s, json!({}), &Vars::new()) else { panic!("must fail") };
    assert_eq!(f.error, "States.ParameterPathFailure");
    let s = state(json!({"Type": "Choice", "Default": "N",
        "Choices": [{"Variable": "$nothing", "IsPresent": true, "Next": "S"}]}));
    assert!(matches!(enter_vars(&s, json!({}), &Vars::new()), Entry::Done { next: Some(n), .. } if n == "N"));
}

#[test]
fn variables_past_their_quotas_fail_with_data_limit_exceeded_which_states_all_does_not_catch() {
    let big = "x".repeat(MAX_ASSIGN_BYTES);
    let catch_all = json!([{"ErrorEquals": ["States.ALL"], "Next": "N"}]);
    let s =
        state(json!({"Type": "Task", "Resource": "f", "Next": "N", "Assign": {"v.$": "$.big"}, "Catch": catch_all}));
    let ctx = context("S");
    let out = finish(&s, &json!({}), Ok(json!({"big": big})), &ctx, &Vars::new(), &mut SeededEntropy::new(1));
    let Outcome::Failed(f) = out else { panic!("one variable over 256 KiB fails the state: {out:?}") };
    assert_eq!(f.error, "States.DataLimitExceeded");
    assert!(f.cause.contains("'v'"), "{}", f.cause);
    // Two variables under the quota each, over it together.
    let half = "x".repeat(MAX_ASSIGN_BYTES / 2);
    let s = state(json!({"Type": "Pass", "End": true, "Assign": {"a.$": "$.h", "b.$": "$.h"}}));
    let Entry::Failed(f) = enter_vars(&s, json!({"h": half}), &Vars::new()) else { panic!("must fail") };
    assert_eq!(f.error, "States.DataLimitExceeded");
    assert!(f.cause.contains("together"), "{}", f.cause);
    // 10 MiB held already: one more variable does not fit, but replacing one that is there does.
    let held: Vars = (0..41).map(|i| (format!("v{i}"), json!("y".repeat(MAX_VARIABLES_BYTES / 41 - 8)))).collect();
    let s = state(json!({"Type": "Pass", "End": true, "Assign": {"more.$": "$.h"}}));
    let Entry::Failed(f) = enter_vars(&s, json!({"h": half}), &held) else { panic!("must fail") };
    assert!(f.cause.contains("10 MiB"), "{}", f.cause);
    let s = state(json!({"Type": "Pass", "End": true, "Assign": {"v0": "small"}}));
    assert!(matches!(enter_vars(&s, json!({}), &held), Entry::Done { .. }));
}

#[test]
fn the_context_object_has_step_functions_fields() {
    let v = context("T").to_value();
    assert_eq!(v["Execution"]["RoleArn"], json!("arn:aws:iam::123456789012:role/flows"), "the machine's role");
    assert_eq!(v["Execution"]["RedriveCount"], json!(0));
    assert_eq!(v["State"], json!({"Name": "T", "EnteredTime": "2024-01-01T00:00:00.000Z", "RetryCount": 0}));
    assert!(v.get("Task").is_none() && v.get("Map").is_none(), "{v}");
    let pass = Context { retry_count: None, ..context("P") }.to_value();
    assert!(pass["State"].get("RetryCount").is_none(), "a state that does not retry has no RetryCount: {pass}");
}
