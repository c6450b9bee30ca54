use super::*;
use serde_json::json;

fn problems(v: Value) -> Vec<Problem> {
    Definition::parse(&v).expect_err("definition should be invalid")
}

fn codes_of(v: Value) -> Vec<(&'static str, String)> {
    problems(v).into_iter().map(|p| (p.code, p.location)).collect()
}

#[test]
fn a_full_definition_parses() {
    let d = Definition::parse(&json!({
        "Comment": "all types", "TimeoutSeconds": 30, "StartAt": "T",
        "States": {
            "T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f:live",
                  "Retry": [{"ErrorEquals": ["Custom"], "MaxAttempts": 2}, {"ErrorEquals": ["States.ALL"]}],
                  "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "F", "ResultPath": "$.error"}],
                  "Next": "C"},
            "C": {"Type": "Choice", "Choices": [{"Variable": "$.x", "NumericGreaterThan": 1, "Next": "P"}], "Default": "W"},
            "W": {"Type": "Wait", "Seconds": 0, "Next": "P"},
            "P": {"Type": "Parallel", "Branches": [
                {"StartAt": "B1", "States": {"B1": {"Type": "Pass", "End": true}}},
                {"StartAt": "B2", "States": {"B2": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                    "Parameters": {"FunctionName": "g", "Payload.$": "$"}, "End": true}}}], "Next": "M"},
            "M": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2,
                  "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": true}}}, "Next": "S"},
            "S": {"Type": "Succeed"},
            "F": {"Type": "Fail", "Error": "Boom", "CausePath": "$.error.Cause"}
        }
    }))
    .unwrap();
    assert_eq!(d.timeout_seconds, Some(30));
    let m = &d.machine;
    assert_eq!(m.successors("T"), vec!["C", "F"]);
    assert_eq!(m.successors("C"), vec!["P", "W"]);
    assert_eq!(m.successors("S"), Vec::<&str>::new());
    let StateKind::Task(t) = &m.state("T").unwrap().kind else { panic!() };
    assert_eq!(t.timeout, Seconds::Fixed(DEFAULT_TASK_TIMEOUT_SECONDS));
    assert!(!t.timeout_given, "the default is not the definition's");
    assert_eq!(t.processing.retry[1].max_attempts, 3);
    assert_eq!(t.processing.retry[1].backoff_rate, 2.0);
    assert!(m.state("S").unwrap().is_terminal());
}

#[test]
fn graph_problems_are_named() {
    let got = codes_of(json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Next": "Nowhere"},
        "Lost": {"Type": "Pass", "Next": "A"}
    }}));
    assert!(got.contains(&(codes::MISSING_TRANSITION_TARGET, "States.A.Next".into())), "{got:?}");
    assert!(got.contains(&(codes::UNREACHABLE_STATE, "States.Lost".into())), "{got:?}");
    assert!(got.contains(&(codes::MISSING_TERMINAL_STATE, "States".into())), "{got:?}");
}

#[test]
fn transitions_cannot_cross_branches() {
    let got = codes_of(json!({"StartAt": "P", "States": {
        "P": {"Type": "Parallel", "Next": "Out", "Branches": [
            {"StartAt": "In", "States": {"In": {"Type": "Pass", "Next": "Out"}, "End1": {"Type": "Succeed"}}}]},
        "Out": {"Type": "Map", "End": true, "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "Next": "P"}}}}
    }}));
    assert!(got.contains(&(codes::BRANCH_OUTBOUND, "States.P.Branches[0].States.In.Next".into())), "{got:?}");
    assert!(got.contains(&(codes::MAP_OUTBOUND, "States.Out.ItemProcessor.States.I.Next".into())), "{got:?}");
}

#[test]
fn duplicate_names_and_template_keys() {
    let got = codes_of(json!({"StartAt": "A", "States": {
        "A": {"Type": "Parallel", "End": true, "Parameters": {"x": 1, "x.$": "$.y"},
              "Branches": [{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}]}
    }}));
    assert!(got.contains(&(codes::DUPLICATE_STATE_NAMES, "States".into())), "{got:?}");
    assert!(got.contains(&(codes::DUPLICATE_FIELD_NAME, "States.A.Parameters.x.$".into())), "{got:?}");
}

#[test]
fn field_rules_are_enforced() {
    let cases = [
        (json!({"Type": "Pass", "Next": "S", "End": true}), "not both"),
        (json!({"Type": "Pass"}), "needs Next or End"),
        (json!({"Type": "Task", "End": true}), "Resource is required"),
        (json!({"Type": "Task", "Resource": "bad name!", "End": true}), "not valid"),
        (
            json!({"Type": "Task", "Resource": "f", "TimeoutSeconds": 5, "TimeoutSecondsPath": "$.t", "End": true}),
            "cannot both",
        ),
        (
            json!({"Type": "Task", "Resource": "f", "TimeoutSeconds": 5, "HeartbeatSeconds": 5, "End": true}),
            "smaller than",
        ),
        (json!({"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage", "End": true}), "not supported"),
        (json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true}), "FunctionName"),
        (
            json!({"Type": "Task", "Resource": "f", "End": true, "Retry": [{"ErrorEquals": ["States.ALL", "X"]}]}),
            "stand alone",
        ),
        (
            json!({"Type": "Task", "Resource": "f", "End": true, "Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}]}),
            "last retrier",
        ),
        (
            json!({"Type": "Task", "Resource": "f", "End": true, "Retry": [{"ErrorEquals": ["X"], "BackoffRate": 0.5}]}),
            "at least 1.0",
        ),
        (json!({"Type": "Task", "Resource": "f", "End": true, "Retry": [{"ErrorEquals": []}]}), "non-empty"),
        (json!({"Type": "Task", "Resource": "f", "End": true, "Catch": [{"ErrorEquals": ["X"]}]}), "needs Next"),
        (json!({"Type": "Wait", "Seconds": 1, "Timestamp": "2024-01-01T00:00:00Z", "Next": "S"}), "exactly one"),
        (json!({"Type": "Wait", "Timestamp": "tomorrow", "Next": "S"}), "RFC 3339"),
        (json!({"Type": "Choice", "Choices": []}), "non-empty"),
        (json!({"Type": "Choice", "Choices": [{"Variable": "$.a", "IsNull": true}]}), "needs Next"),
        (json!({"Type": "Fail", "Error": "E", "ErrorPath": "$.e"}), "cannot both"),
        (json!({"Type": "Fail", "InputPath": "$"}), "unknown field 'InputPath'"),
        (json!({"Type": "Map", "End": true}), "ItemProcessor"),
        (
            json!({"Type": "Map", "End": true, "ItemSelector": {}, "Parameters": {}, "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Succeed"}}}}),
            "cannot both",
        ),
        (json!({"Type": "Pass", "End": true, "ResultPath": "$.a[*]"}), "reference path"),
        (json!({"Type": "Pass", "End": true, "ResultPath": "$$.a"}), "context object"),
        (json!({"Type": "Pass", "End": true, "InputPath": "a"}), "starts with '$'"),
        (json!({"Type": "Pass", "End": true, "Assign": {"x.y": 1}}), "not a variable name"),
        (json!({"Type": "Pass", "End": true, "Assign": {"x[0]": 1}}), "not a variable name"),
        (json!({"Type": "Pass", "End": true, "Assign": {"1x": 1}}), "not a variable name"),
        (json!({"Type": "Pass", "End": true, "Assign": {"states": 1}}), "reserved"),
        (json!({"Type": "Pass", "End": true, "Assign": [1]}), "object of variables"),
        (json!({"Type": "Pass", "End": true, "Assign": {"x.$": "$.["}}), "invalid JSONPath"),
        (json!({"Type": "Succeed", "Assign": {"x": 1}}), "unknown field 'Assign'"),
        (json!({"Type": "Pass", "End": true, "Output": 1}), "Output is a JSONata field"),
        (json!({"Type": "Pass", "End": true, "QueryLanguage": "JSONata", "Parameters": {}}), "a state in JSONata uses"),
        (json!({"Type": "Pass", "End": true, "QueryLanguage": "JSONata", "Output": "{% 1 + %}"}), "S0207"),
        (
            json!({"Type": "Pass", "End": true, "QueryLanguage": "JSONata", "Assign": {"a": {"b": "{% ( %}"}}}),
            "not valid",
        ),
        (
            json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true, "QueryLanguage": "JSONata", "Arguments": {}}),
            "needs Arguments with FunctionName",
        ),
        (
            json!({"Type": "Choice", "QueryLanguage": "JSONata", "Choices": [{"Condition": 1, "Next": "S"}]}),
            "Condition is true, false",
        ),
        (json!({"Type": "Choice", "QueryLanguage": "JSONata", "Choices": [{"Next": "S"}]}), "needs a Condition"),
        (
            json!({"Type": "Choice", "QueryLanguage": "JSONata", "Choices": [{"Condition": ["{% true %}"], "Next": "S"}]}),
            "Condition is true, false",
        ),
        (
            json!({"Type": "Map", "End": true, "QueryLanguage": "JSONata", "Items": {"a": 1}, "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Succeed"}}}}),
            "Items is an array",
        ),
        (json!({"Type": "Wait", "Seconds": "{% ) %}", "Next": "S", "QueryLanguage": "JSONata"}), "not valid"),
        (json!({"Type": "Wait", "Seconds": "{% 1 %}", "Next": "S"}), "integer"),
        (json!({"Type": "Pass", "End": true, "Nonsense": 1}), "unknown field 'Nonsense'"),
        (json!({"Type": "Teleport", "End": true}), "unknown Type"),
    ];
    for (state, needle) in cases {
        let ps = problems(json!({"StartAt": "S", "States": {"S": state.clone()}}));
        let text: Vec<String> = ps.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|t| t.contains(needle) && t.contains("States.S")), "{state}: {text:?}");
    }
}

#[test]
fn top_level_shape() {
    assert!(Definition::parse_str("{").unwrap_err()[0].message.contains("not JSON"));
    assert!(problems(json!([])).iter().any(|p| p.message.contains("JSON object")));
    assert!(problems(json!({"States": {}})).iter().any(|p| p.location == "StartAt"));
    assert!(problems(json!({"StartAt": "X", "States": {"A": {"Type": "Succeed"}}}))
        .iter()
        .any(|p| p.code == codes::MISSING_TRANSITION_TARGET && p.location == "StartAt"));
    assert!(problems(json!({"StartAt": "A", "Version": "2.0", "States": {"A": {"Type": "Succeed"}}}))
        .iter()
        .any(|p| p.location == "Version"));
    let long = "x".repeat(81);
    assert!(problems(json!({"StartAt": long.clone(), "States": {long: {"Type": "Succeed"}}}))
        .iter()
        .any(|p| p.message.contains("1 to 80")));
}

#[test]
fn query_language_is_inherited_and_jsonpath_cannot_undo_a_jsonata_machine() {
    let d = Definition::parse(&json!({"QueryLanguage": "JSONata", "StartAt": "P", "States": {
        "P": {"Type": "Parallel", "End": true, "Branches": [{"StartAt": "B", "States": {"B": {"Type": "Pass", "End": true, "Output": "{% 1 %}"}}}]}
    }}))
    .unwrap();
    let StateKind::Parallel(p) = &d.machine.states["P"].kind else { panic!("a Parallel") };
    assert_eq!(d.machine.states["P"].language, QueryLanguage::Jsonata);
    assert_eq!(p.branches[0].states["B"].language, QueryLanguage::Jsonata, "a branch inherits the machine's");
    // One state may opt into JSONata in a JSONPath machine; the others stay JSONPath.
    let d = Definition::parse(&json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "QueryLanguage": "JSONata", "Output": "{% 1 %}", "Next": "B"},
        "B": {"Type": "Pass", "End": true, "ResultPath": "$.x"}
    }}))
    .unwrap();
    assert_eq!(d.machine.states["A"].language, QueryLanguage::Jsonata);
    assert_eq!(d.machine.states["B"].language, QueryLanguage::JsonPath);
    let ps = problems(json!({"QueryLanguage": "JSONata", "StartAt": "A", "States": {
        "A": {"Type": "Pass", "QueryLanguage": "JSONPath", "End": true}
    }}));
    assert!(ps.iter().any(|p| p.message.contains("can not be 'JSONPath' if set to 'JSONata'")), "{ps:?}");
    // A distributed Map's children run its processor in the language it had in the parent.
    let d = Definition::parse(&json!({"QueryLanguage": "JSONata", "StartAt": "M", "States": {
        "M": {"Type": "Map", "End": true, "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED"},
              "StartAt": "I", "States": {"I": {"Type": "Pass", "End": true, "Output": "{% $states.input %}"}}}}
    }}))
    .unwrap();
    let StateKind::Map(m) = &d.machine.states["M"].kind else { panic!("a Map") };
    let child = &m.distributed.as_ref().unwrap().definition;
    assert_eq!(child["QueryLanguage"], "JSONata");
    assert!(Definition::parse(child).is_ok());
}

#[test]
fn jsonpath_fields_may_read_variables_but_resultpath_cannot_write_one() {
    let d = Definition::parse(&json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Assign": {"x": 1, "items": []}, "Next": "B"},
        "B": {"Type": "Pass", "InputPath": "$x", "OutputPath": "$x.y[0]", "Parameters": {"v.$": "$items"}, "Next": "C"},
        "C": {"Type": "Choice", "Choices": [{"Variable": "$x", "NumericEqualsPath": "$x", "Next": "D"}], "Default": "D"},
        "D": {"Type": "Map", "ItemsPath": "$items", "End": true,
              "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": true}}}}}}));
    assert!(d.is_ok(), "{d:?}");
    let refused = problems(json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "ResultPath": "$x", "End": true}}}));
    assert_eq!(refused[0].code, codes::INVALID_PATH);
    assert!(refused[0].message.contains("use Assign"), "{}", refused[0].message);
    let refused =
        problems(json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "InputPath": "$x-y", "End": true}}}));
    assert_eq!((refused[0].code, refused[0].location.as_str()), (codes::INVALID_PATH, "States.A.InputPath"));
}

#[test]
fn an_inner_scope_reads_outer_variables_but_cannot_assign_them() {
    let branch =
        |assign: Value| json!({"StartAt": "B", "States": {"B": {"Type": "Pass", "Assign": assign, "End": true}}});
    let machine = |inner: Value, catch_assign: Value| {
        json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Assign": {"x": 1}, "Next": "P"},
        "P": {"Type": "Parallel", "Branches": [inner], "Next": "M",
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "M", "Assign": catch_assign}]},
        "M": {"Type": "Map", "End": true, "ItemProcessor": {"StartAt": "I", "States": {
            "I": {"Type": "Pass", "Assign": {"inner.$": "$x"}, "End": true}}}}}})
    };
    // Reading x inside, assigning other names, and a catcher of the Parallel assigning x (the outer scope's).
    assert!(Definition::parse(&machine(branch(json!({"y.$": "$x"})), json!({"x": 2}))).is_ok());
    let refused = codes_of(machine(branch(json!({"x": 2})), json!({})));
    assert_eq!(refused, vec![(codes::SCHEMA, "States.P.Branches[0].States.B.Assign.x".to_string())]);
    // Nested: a Map inside a Parallel branch cannot assign what the branch or the top level assign.
    let nested = json!({"StartAt": "B", "States": {"B": {"Type": "Map", "End": true, "Assign": {"b": 1},
        "ItemProcessor": {"StartAt": "J", "States": {"J": {"Type": "Pass", "Assign": {"b": 2, "x": 3}, "End": true}}}}}});
    let refused = codes_of(machine(nested, json!({})));
    assert_eq!(
        refused,
        vec![
            (codes::SCHEMA, "States.P.Branches[0].States.B.ItemProcessor.States.J.Assign.b".to_string()),
            (codes::SCHEMA, "States.P.Branches[0].States.B.ItemProcessor.States.J.Assign.x".to_string()),
        ]
    );
    // A distributed Map's children start with no variables: their names are their own.
    let distributed = json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Assign": {"x": 1}, "Next": "M"},
        "M": {"Type": "Map", "End": true, "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED"},
            "StartAt": "I", "States": {"I": {"Type": "Pass", "Assign": {"x": 2}, "End": true}}}}}});
    assert!(Definition::parse(&distributed).is_ok());
}
