"""JSONata states and variables through an unmodified boto3 client: a machine in QueryLanguage JSONata calling a
function with Arguments and shaping its result with Output, variables set by Assign (read in a Map's
iterations, set by a catcher, shown in the history as Step Functions shows them), Step Functions' JSONata
functions, a JSONPath machine with one JSONata state and JSONPath Assign, JSONPath fields reading variables, and
the errors a client sees.

Run by crates/stoke/tests/clients.rs against a real server that already has the functions `double` and
`boom`; reads STOKE_ENDPOINT, STOKE_AKID, STOKE_SECRET and STOKE_ACCOUNT from the environment. Every step
asserts; the first failure exits non-zero.
"""
import json

import botocore

from sfn_helpers import ROLE, events, run, sfn

# 1. A JSONata machine: Arguments, Output, Assign, a Map reading an outer variable, a catcher's Assign.
machine = {
    "QueryLanguage": "JSONata",
    "StartAt": "Setup",
    "States": {
        "Setup": {"Type": "Pass", "Next": "Call",
                  "Assign": {"bonus": "{% $states.input.bonus %}", "tags": ["a", "b"]}},
        "Call": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Next": "Each",
                 "Arguments": {"FunctionName": "double", "Payload": {"n": "{% $states.input.n %}"}},
                 "Output": "{% $states.result.Payload.n + $bonus %}",
                 "Assign": {"status": "{% $states.result.StatusCode %}"}},
        "Each": {"Type": "Map", "Items": "{% $tags %}", "Next": "Risky",
                 "ItemProcessor": {"StartAt": "Tag", "States": {
                     "Tag": {"Type": "Pass", "End": True, "Output": "{% $states.input & '-' & $string($bonus) %}"}}},
                 "Output": {"total": "{% $states.input %}", "tags": "{% $states.result %}"}},
        "Risky": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Next": "Done",
                  "Arguments": {"FunctionName": "boom", "Payload": "{% $states.input %}"},
                  "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Done",
                             "Assign": {"caught": "{% $states.errorOutput.Error %}"},
                             "Output": "{% $states.input %}"}]},
        "Done": {"Type": "Succeed", "Output": {
            "total": "{% $states.input.total %}", "tags": "{% $states.input.tags %}", "status": "{% $status %}",
            "caught": "{% $caught %}", "parts": "{% $partition([1, 2, 3], 2) %}", "range": "{% $range(0, 10, 5) %}",
            "hash": "{% $hash('abc', 'SHA-256') %}", "parsed": "{% $parse('{\"k\": [1]}') %}",
            "uuid": "{% $length($uuid()) %}"}},
    },
}
e = run("ata-flow", machine, {"n": 20, "bonus": 2})
assert e["status"] == "SUCCEEDED", e
out = json.loads(e["output"])
assert out == {
    "total": 42, "tags": ["a-2", "b-2"], "status": 200, "caught": "Boom",
    "parts": [[1, 2], [3]], "range": [0, 5, 10],
    "hash": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    "parsed": {"k": [1]}, "uuid": 36,
}, out
hist = events(e["executionArn"])
setup = next(h for h in hist if h["type"] == "PassStateExited")["stateExitedEventDetails"]
assert setup["assignedVariables"] == {"bonus": "2", "tags": '["a","b"]'}, setup
assert setup["assignedVariablesDetails"] == {"truncated": False}, setup
call = next(h for h in hist if h["type"] == "TaskStateExited")["stateExitedEventDetails"]
assert call["assignedVariables"] == {"status": "200"} and json.loads(call["output"]) == 42, call

# 2. An expression that gives nothing fails the execution with States.QueryEvaluationError.
e = run("ata-undefined", {"QueryLanguage": "JSONata", "StartAt": "P", "States": {
    "P": {"Type": "Pass", "End": True, "Output": "{% $states.input.nope %}"}}}, {})
assert e["status"] == "FAILED" and e["error"] == "States.QueryEvaluationError", e
assert e["cause"] == (
    "An error occurred while executing the state 'P' (entered at the event id #2). "
    "The JSONata expression '$states.input.nope' specified for the field 'Output' returned nothing (undefined)."), e
# As Step Functions records it: an EvaluationFailed event naming the field, then the execution's failure.
hist = events(e["executionArn"])
assert [h["type"] for h in hist] == ["ExecutionStarted", "PassStateEntered", "EvaluationFailed", "ExecutionFailed"], hist
assert hist[2]["evaluationFailedEventDetails"] == {
    "error": "States.QueryEvaluationError", "cause": e["cause"], "location": "Output", "state": "P"}, hist[2]
# A Map whose Items are not an array fails on entry: EvaluationFailed, then MapStateFailed (recorded on AWS).
e = run("ata-map-items", {"QueryLanguage": "JSONata", "StartAt": "M", "States": {
    "M": {"Type": "Map", "End": True, "Items": "{% 1 %}",
          "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Succeed"}}}}}}, {})
assert e["status"] == "FAILED" and e["error"] == "States.QueryEvaluationError", e
hist = events(e["executionArn"])
assert [h["type"] for h in hist] == [
    "ExecutionStarted", "MapStateEntered", "EvaluationFailed", "MapStateFailed", "ExecutionFailed"], hist
assert hist[2]["evaluationFailedEventDetails"]["location"] == "Items", hist[2]
assert e["cause"].endswith("The JSONata expression '1' specified for the field 'Items' returned an unexpected result "
                           "type. Expected 'array', but was 'number' for value: 1"), e
# A Task's Output fails after its function ran: located the same way, and its catcher sees that cause.
e = run("ata-task-output", {"QueryLanguage": "JSONata", "StartAt": "T", "States": {
    "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Next": "Caught",
          "Arguments": {"FunctionName": "double", "Payload": {"n": 1}},
          "Output": {"n": "{% $states.result.Payload.nope %}"},
          "Catch": [{"ErrorEquals": ["States.QueryEvaluationError"], "Next": "Caught",
                     "Output": "{% $states.errorOutput %}"}]},
    "Caught": {"Type": "Succeed"}}}, {})
assert e["status"] == "SUCCEEDED", e
caught = json.loads(e["output"])
assert caught["Error"] == "States.QueryEvaluationError", caught
assert caught["Cause"].startswith("An error occurred while executing the state 'T' (entered at the event id #2). "
                                  "The JSONata expression '$states.result.Payload.nope' specified for the field "
                                  "'Output/n'"), caught
failed = [h for h in events(e["executionArn"]) if h["type"] == "EvaluationFailed"]
assert len(failed) == 1 and failed[0]["evaluationFailedEventDetails"]["location"] == "Output/n", failed

# 3. JSONPath with variables: Assign from the result ($) and the context, one state in JSONata reading them.
mixed = {
    "StartAt": "Add",
    "States": {
        "Add": {"Type": "Task", "Resource": "double", "ResultPath": "$.res", "Next": "Show",
                "Assign": {"doubled.$": "$.n", "where.$": "$$.State.Name", "fixed": "kept"}},
        "Show": {"Type": "Pass", "QueryLanguage": "JSONata", "End": True,
                 "Output": {"doubled": "{% $doubled %}", "where": "{% $where %}", "fixed": "{% $fixed %}",
                            "input": "{% $states.input.res.n %}"}},
    },
}
e = run("mixed-vars", mixed, {"n": 5})
assert e["status"] == "SUCCEEDED", e
assert json.loads(e["output"]) == {"doubled": 10, "where": "Add", "fixed": "kept", "input": 10}, e["output"]

# 4. JSONPath states read variables through paths ($name): a guessing loop in a Choice, InputPath, a Map's
#    ItemsPath, an intrinsic, and a Fail state's ErrorPath and CausePath (Step Functions' BASE_REFERENCE_IN_* cases).
guessing = {
    "StartAt": "Setup",
    "States": {
        "Setup": {"Type": "Pass", "Next": "Check",
                  "Assign": {"guess": "first", "answer": "right", "items": [1, 2], "why": "all guessed"}},
        "Check": {"Type": "Choice", "Default": "Wrong",
                  "Choices": [{"Variable": "$guess", "StringEqualsPath": "$answer", "Next": "Each"}]},
        "Wrong": {"Type": "Pass", "Next": "Check", "Assign": {"guess.$": "$answer", "tries.$": "States.MathAdd(1, 1)"}},
        "Each": {"Type": "Map", "ItemsPath": "$items", "Next": "Count",
                 "ItemProcessor": {"StartAt": "Label", "States": {
                     "Label": {"Type": "Pass", "End": True, "Parameters": {"item.$": "$", "guess.$": "$guess"}}}}},
        "Count": {"Type": "Pass", "InputPath": "$tries", "ResultPath": "$", "Next": "Stop"},
        "Stop": {"Type": "Fail", "ErrorPath": "$guess", "CausePath": "States.Format('{} after {}', $why, $tries)"},
    },
}
e = run("path-vars", guessing, {})
assert e["status"] == "FAILED", e
assert (e["error"], e["cause"]) == ("right", "all guessed after 2"), e
hist = events(e["executionArn"])
mapped = next(h for h in hist if h["type"] == "MapStateExited")["stateExitedEventDetails"]
assert json.loads(mapped["output"]) == [{"item": 1, "guess": "right"}, {"item": 2, "guess": "right"}], mapped

# 5. Definitions with mistakes are refused with what is wrong.
for definition, needle in [
    ({"QueryLanguage": "JSONata", "StartAt": "P", "States": {"P": {"Type": "Pass", "End": True, "Output": "{% 1 + %}"}}},
     "S0207"),
    ({"QueryLanguage": "JSONata", "StartAt": "P", "States": {"P": {"Type": "Pass", "End": True, "ResultPath": "$.x"}}},
     "ResultPath is a JSONPath field"),
    ({"QueryLanguage": "JSONata", "StartAt": "P", "States": {"P": {"Type": "Pass", "End": True, "QueryLanguage": "JSONPath"}}},
     "can not be 'JSONPath'"),
    ({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True, "Assign": {"a.b": 1}}}}, "not a variable name"),
    ({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True, "ResultPath": "$x"}}}, "use Assign"),
    ({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Assign": {"x": 1}, "Next": "P"},
        "P": {"Type": "Parallel", "End": True, "Branches": [
            {"StartAt": "B", "States": {"B": {"Type": "Pass", "End": True, "Assign": {"x": 2}}}}]}}},
     "belongs to an enclosing scope"),
]:
    try:
        sfn.create_state_machine(name="refused", definition=json.dumps(definition), roleArn=ROLE)
        raise AssertionError(f"accepted: {definition}")
    except botocore.exceptions.ClientError as err:
        assert err.response["Error"]["Code"] == "InvalidDefinition", err
        assert needle in err.response["Error"]["Message"], (needle, err.response["Error"]["Message"])

print("all checks passed")
