"""A distributed Map through an unmodified boto3 client: its map run, the child executions with their own
histories, DescribeMapRun, ListMapRuns and ListExecutions by map run, batching and failure tolerance.

Run by crates/stoke/tests/clients.rs against a real server that already has a function named `double`;
reads STOKE_ENDPOINT, STOKE_AKID, STOKE_SECRET and STOKE_ACCOUNT from the environment. Every step asserts;
the first failure exits non-zero. The event shapes follow what Step Functions records (docs/workflows.md).
"""
import json

from aws_errors import expect_error
from sfn_helpers import ACCOUNT, PREFIX, events, run as run_with, sfn


def distributed(processor, **extra):
    state = {"Type": "Map", "ItemsPath": "$.items", "End": True,
             "ItemProcessor": dict(processor, ProcessorConfig={"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"})}
    state.update(extra)
    return {"StartAt": "Fan", "States": {"Fan": state}}


def run(name, definition, items):
    return run_with(name, definition, {"items": items})


# 1. One child execution per item, each invoking a function; the parent's history holds the map run only.
DOUBLE = {"StartAt": "D", "States": {"D": {
    "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "OutputPath": "$.Payload", "End": True,
    "Parameters": {"FunctionName": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:double", "Payload.$": "$"}}}}
done = run("dmap", distributed(DOUBLE, Label="Doubling", MaxConcurrency=2), [{"n": 1}, {"n": 2}, {"n": 3}])
assert done["status"] == "SUCCEEDED", done
assert json.loads(done["output"]) == [{"n": 2}, {"n": 4}, {"n": 6}], done
history = events(done["executionArn"])
kinds = [e["type"] for e in history]
assert kinds == ["ExecutionStarted", "MapStateEntered", "MapStateStarted", "MapRunStarted", "MapRunSucceeded",
                 "MapStateSucceeded", "MapStateExited", "ExecutionSucceeded"], kinds
assert history[2]["mapStateStartedEventDetails"] == {"length": 3}, history[2]
run_arn = history[3]["mapRunStartedEventDetails"]["mapRunArn"]
assert run_arn.startswith(f"{PREFIX}:mapRun:dmap/Doubling:"), run_arn

runs = sfn.list_map_runs(executionArn=done["executionArn"])["mapRuns"]
assert [r["mapRunArn"] for r in runs] == [run_arn], runs
assert runs[0]["stateMachineArn"] == f"{PREFIX}:stateMachine:dmap/Doubling", runs
described = sfn.describe_map_run(mapRunArn=run_arn)
assert described["status"] == "SUCCEEDED" and described["executionArn"] == done["executionArn"], described
assert described["maxConcurrency"] == 2, described
assert (described["toleratedFailureCount"], described["toleratedFailurePercentage"]) == (0, 0.0), described
for counts in (described["itemCounts"], described["executionCounts"]):
    assert counts == {"pending": 0, "running": 0, "succeeded": 3, "failed": 0, "timedOut": 0, "aborted": 0,
                      "total": 3, "resultsWritten": 3}, described

children = sfn.list_executions(mapRunArn=run_arn)["executions"]
assert len(children) == 3 and all(c["status"] == "SUCCEEDED" for c in children), children
assert all(c["mapRunArn"] == run_arn and c["itemCount"] == 1 for c in children), children
child = sfn.describe_execution(executionArn=children[0]["executionArn"])
assert child["executionArn"].startswith(f"{PREFIX}:execution:dmap/Doubling:"), child
assert child["stateMachineArn"] == f"{PREFIX}:stateMachine:dmap/Doubling" and child["mapRunArn"] == run_arn, child
assert json.loads(child["input"]) in ({"n": 1}, {"n": 2}, {"n": 3}), child
child_kinds = [e["type"] for e in events(child["executionArn"])]
assert child_kinds[0] == "ExecutionStarted" and "TaskScheduled" in child_kinds, child_kinds
assert child_kinds[-1] == "ExecutionSucceeded", child_kinds
# A child is its parent's to drive: stopping one alone is refused, saying what to stop instead.
e = expect_error("ValidationException", sfn.stop_execution, executionArn=child["executionArn"])
assert "stop the execution that started" in e.response["Error"]["Message"], e.response
assert len(sfn.list_executions(mapRunArn=run_arn, statusFilter="SUCCEEDED")["executions"]) == 3
assert sfn.list_executions(mapRunArn=run_arn, statusFilter="FAILED")["executions"] == []
# The machine's own executions do not include its map runs' children.
own = sfn.list_executions(stateMachineArn=f"{PREFIX}:stateMachine:dmap")["executions"]
assert [e["executionArn"] for e in own] == [done["executionArn"]], own

# 2. Batches: two items per child, each child's input {"BatchInput", "Items"}.
PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
batched = run("dbatch", distributed(PASS, ItemBatcher={"MaxItemsPerBatch": 2, "BatchInput": {"tag": "b"}}),
              [1, 2, 3, 4, 5])
assert batched["status"] == "SUCCEEDED", batched
assert json.loads(batched["output"]) == [{"BatchInput": {"tag": "b"}, "Items": [1, 2]},
                                         {"BatchInput": {"tag": "b"}, "Items": [3, 4]},
                                         {"BatchInput": {"tag": "b"}, "Items": [5]}], batched
batch_run = sfn.list_map_runs(executionArn=batched["executionArn"])["mapRuns"][0]["mapRunArn"]
described = sfn.describe_map_run(mapRunArn=batch_run)
assert (described["itemCounts"]["total"], described["executionCounts"]["total"]) == (5, 3), described
assert sorted(c["itemCount"] for c in sfn.list_executions(mapRunArn=batch_run)["executions"]) == [1, 2, 2]

# 3. A failed item: past the tolerance the run fails and starts no further child; within it, it succeeds.
CHECK = {"StartAt": "C", "States": {
    "C": {"Type": "Choice", "Choices": [{"Variable": "$.fail", "BooleanEquals": True, "Next": "Boom"}],
          "Default": "Ok"},
    "Boom": {"Type": "Fail", "Error": "Boom", "Cause": "bad item"},
    "Ok": {"Type": "Pass", "End": True}}}
items = [{"fail": False}, {"fail": True}, {"fail": False}, {"fail": False}]
failed = run("dfail", distributed(CHECK, MaxConcurrency=1), items)
assert failed["status"] == "FAILED", failed
assert failed["error"] == "States.ExceedToleratedFailureThreshold", failed
assert failed["cause"] == "The specified tolerated failure threshold was exceeded", failed
history = events(failed["executionArn"])
kinds = [e["type"] for e in history]
assert kinds[-3:] == ["MapRunFailed", "MapStateFailed", "ExecutionFailed"], kinds
assert history[-3]["mapRunFailedEventDetails"]["error"] == "States.ExceedToleratedFailureThreshold", history[-3]
failed_run = sfn.list_map_runs(executionArn=failed["executionArn"])["mapRuns"][0]["mapRunArn"]
described = sfn.describe_map_run(mapRunArn=failed_run)
assert described["status"] == "FAILED", described
counts = described["itemCounts"]
assert (counts["succeeded"], counts["failed"], counts["pending"]) == (1, 1, 2), described

tolerated = run("dtolerate", distributed(CHECK, MaxConcurrency=1, ToleratedFailureCount=1), items)
assert tolerated["status"] == "SUCCEEDED", tolerated
out = json.loads(tolerated["output"])
assert out[1] == {"Error": "Boom", "Cause": "bad item"} and out[0] == {"fail": False} and len(out) == 4, out

# 4. Items from a reader function (ItemsPath is ignored, MaxItems cuts), results to a writer function.
FN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function"
reader = {"Resource": "arn:aws:states:::lambda:invoke", "ReaderConfig": {"MaxItems": 3},
          "Parameters": {"FunctionName": f"{FN}:lister", "Payload": {"count.$": "$.count"}}}
writer = {"Resource": f"{FN}:archive", "Parameters": {"note": "from the writer"}}
read = run_with("dread", distributed(DOUBLE, ItemReader=reader, ResultWriter=writer, ItemsPath="$.nowhere"),
               {"count": 5})
arn = read["executionArn"]
assert read["status"] == "SUCCEEDED", read
out = json.loads(read["output"])
read_run = sfn.list_map_runs(executionArn=arn)["mapRuns"][0]["mapRunArn"]
assert out["MapRunArn"] == read_run, out
assert out["ResultWriterDetails"] == {"received": 3, "run": read_run, "note": "from the writer",
                                      "outputs": [{"n": 0}, {"n": 2}, {"n": 4}]}, out
history = events(arn)
assert history[2]["mapStateStartedEventDetails"] == {"length": 0}, history[2]
assert sfn.describe_map_run(mapRunArn=read_run)["itemCounts"]["total"] == 3
# A reader whose answer is not an array fails the run as Step Functions does.
bad = run_with("dnotlist", distributed(DOUBLE, ItemReader={"Resource": f"{FN}:lister", "Parameters": {"count": -1}}), {})
arn = bad["executionArn"]
assert (bad["status"], bad["error"]) == ("FAILED", "States.ItemReaderFailed"), bad
assert bad["cause"] == "Attempting to map over non-iterable node.", bad
assert [e["type"] for e in events(arn)][-3:] == ["MapRunFailed", "MapStateFailed", "ExecutionFailed"]
expect_error("InvalidDefinition", sfn.create_state_machine, name="ds3", roleArn="arn:aws:iam::1:role/x",
             definition=json.dumps(distributed(PASS, ItemReader={"Resource": "arn:aws:states:::s3:getObject",
                                                                  "Parameters": {"Bucket": "b", "Key": "k"}})))

# 5. Bad requests and definitions, with Step Functions' codes.
expect_error("InvalidArn", sfn.describe_map_run, mapRunArn="arn:aws:states:us-east-1:1:execution:x:y")
expect_error("ResourceNotFound", sfn.describe_map_run, mapRunArn=f"{PREFIX}:mapRun:dmap/Doubling:nope")
expect_error("ValidationException", sfn.list_executions, mapRunArn=run_arn,
             stateMachineArn=f"{PREFIX}:stateMachine:dmap")
expect_error("InvalidDefinition", sfn.create_state_machine, name="dbad", roleArn="arn:aws:iam::1:role/x",
             definition=json.dumps(distributed(PASS, Label="has space")))
expect_error("InvalidDefinition", sfn.create_state_machine, name="dbad", roleArn="arn:aws:iam::1:role/x",
             definition=json.dumps(distributed(PASS, ItemBatcher={})))
print("boto3 distributed map: all checks passed")
