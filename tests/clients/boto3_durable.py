"""Lambda durable functions on stoke, driven by boto3, running AWS's own durable execution SDK unmodified.

Publishes the SDK (and the boto3 it needs) as a layer from the wheels in STOKE_DURABLE_WHEELS, creates a durable
function, and checks: a synchronous invoke runs steps and a wait to the end, with AWS's history; an Event invoke
waits on a callback that the API answers; a stop; names make invocations idempotent; a durable function's own key
reaches nothing but its checkpoints; bad input gets Lambda's errors. Prints "all checks passed".
"""

import base64
import hashlib
import hmac
import json
import os

from aws_errors import expect_error
from durable_helpers import ACCOUNT, client, code, create_orders, history, lam, wait_for, wait_for_event

fn = create_orders()
assert fn["DurableConfig"] == {"ExecutionTimeout": 300, "RetentionPeriodInDays": 7}, fn
got = lam.get_function_configuration(FunctionName="orders")
assert got["DurableConfig"]["ExecutionTimeout"] == 300, got
print("a durable function is created with its DurableConfig")

# A synchronous invoke waits for the whole execution: two steps and a wait between them.
resp = lam.invoke(FunctionName="orders", Qualifier="$LATEST", Payload=json.dumps({"mode": "steps", "n": 20}))
body = json.loads(resp["Payload"].read())
assert resp["StatusCode"] == 200 and "FunctionError" not in resp, resp
assert body == {"result": 42}, body
arn = resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
assert arn.startswith(f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:orders:$LATEST/durable-execution/"), arn
execution = lam.get_durable_execution(DurableExecutionArn=arn)
assert execution["Status"] == "SUCCEEDED" and json.loads(execution["Result"]) == {"result": 42}, execution
assert json.loads(execution["InputPayload"]) == {"mode": "steps", "n": 20}, execution
# The history is complete once the invoke answers, paged five at a time.
kinds = [e["EventType"] for e in history(arn)]
assert kinds == [
    "ExecutionStarted",
    "StepStarted", "StepSucceeded",
    "WaitStarted", "InvocationCompleted",
    "WaitSucceeded",
    "StepStarted", "StepSucceeded",
    "InvocationCompleted", "ExecutionSucceeded",
], kinds
events = history(arn)
assert [e["EventId"] for e in events] == list(range(1, len(events) + 1)), events
assert events[1]["Name"] == "add" and events[3]["WaitStartedDetails"]["Duration"] == 1, events
newest = lam.get_durable_execution_history(DurableExecutionArn=arn, ReverseOrder=True, MaxItems=1)
assert newest["Events"][0]["EventType"] == "ExecutionSucceeded", newest
print("a synchronous invoke runs steps and a wait to the end, with AWS's history")

# A failing handler fails the execution; the caller gets the error.
resp = lam.invoke(FunctionName="orders", Qualifier="$LATEST", Payload=json.dumps({"mode": "fail"}))
body = json.loads(resp["Payload"].read())
assert resp.get("FunctionError") == "Unhandled", resp
assert "the order is not valid" in body["errorMessage"], body
failed = resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
assert lam.get_durable_execution(DurableExecutionArn=failed)["Status"] == "FAILED"
print("a failing handler fails its execution")

# An Event invoke answers at once; the execution waits on a callback that the API answers.
resp = lam.invoke(
    FunctionName="orders", Qualifier="$LATEST", InvocationType="Event",
    DurableExecutionName="approve-1", Payload=json.dumps({"mode": "callback"}),
)
assert resp["StatusCode"] == 202, resp
waiting = resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
assert "/durable-execution/approve-1/" in waiting, waiting
callback_id = wait_for_event(waiting, "CallbackStarted")["CallbackStartedDetails"]["CallbackId"]
# The same name and input is the same execution; another input under that name is refused.
again = lam.invoke(
    FunctionName="orders", Qualifier="$LATEST", InvocationType="Event",
    DurableExecutionName="approve-1", Payload=json.dumps({"mode": "callback"}),
)
assert again["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"] == waiting, again
expect_error(
    "DurableExecutionAlreadyStartedException", lam.invoke, FunctionName="orders", Qualifier="$LATEST",
    InvocationType="Event", DurableExecutionName="approve-1", Payload=json.dumps({"mode": "steps", "n": 1}),
)
lam.send_durable_execution_callback_heartbeat(CallbackId=callback_id)
# The result reaches the function as it was sent (the SDK parses it only when told how).
lam.send_durable_execution_callback_success(CallbackId=callback_id, Result=b"approved by ops")
done = wait_for(waiting, "SUCCEEDED")
assert json.loads(done["Result"]) == {"approved": "approved by ops"}, done
expect_error("CallbackTimeoutException", lam.send_durable_execution_callback_success, CallbackId=callback_id, Result=b'"again"')
expect_error("ResourceNotFoundException", lam.send_durable_execution_callback_success, CallbackId=base64.b64encode(b"nope\nnope").decode(), Result=b"1")
print("an Event invoke waits on a callback that the API answers; names make invokes idempotent")

# A long wait is stopped.
resp = lam.invoke(FunctionName="orders", Qualifier="$LATEST", InvocationType="Event", Payload=json.dumps({"mode": "sleep"}))
sleeping = resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
wait_for_event(sleeping, "WaitStarted")
stopped = lam.stop_durable_execution(DurableExecutionArn=sleeping, Error={"ErrorType": "Cancelled", "ErrorMessage": "no longer needed"})
assert stopped["StopTimestamp"], stopped
assert lam.get_durable_execution(DurableExecutionArn=sleeping)["Status"] == "STOPPED"
assert history(sleeping)[-1]["EventType"] == "ExecutionStopped"
expect_error("InvalidParameterValueException", lam.stop_durable_execution, DurableExecutionArn=sleeping)
print("a waiting execution is stopped")

listed = lam.list_durable_executions_by_function(FunctionName="orders")["DurableExecutions"]
assert {e["Status"] for e in listed} == {"SUCCEEDED", "FAILED", "STOPPED"}, listed
assert len(listed) == 4, listed
only = lam.list_durable_executions_by_function(FunctionName="orders", Statuses=["STOPPED", "FAILED"])["DurableExecutions"]
assert sorted(e["Status"] for e in only) == ["FAILED", "STOPPED"], only
page = lam.list_durable_executions_by_function(FunctionName="orders", MaxItems=3)
assert len(page["DurableExecutions"]) == 3 and page["NextMarker"], page
rest = lam.list_durable_executions_by_function(FunctionName="orders", Marker=page["NextMarker"])
assert len(rest["DurableExecutions"]) == 1 and "NextMarker" not in rest, rest
named = lam.list_durable_executions_by_function(FunctionName="orders", DurableExecutionName="approve-1")
assert [e["DurableExecutionArn"] for e in named["DurableExecutions"]] == [waiting], named
print("executions are listed, filtered and paged")

# A durable function's key: derived from the account's secret, it reaches only its own checkpoints.
scoped_secret = hmac.new(
    os.environ["STOKE_SECRET"].encode(), f"stoke-durable-v1\n{ACCOUNT}\norders".encode(), hashlib.sha256
).hexdigest()
scoped = client(f"STKD{ACCOUNT}orders", scoped_secret)
expect_error("AccessDeniedException", scoped.list_functions)
expect_error("AccessDeniedException", scoped.get_durable_execution, DurableExecutionArn=arn)
e = expect_error("InvalidParameterValueException", scoped.checkpoint_durable_execution, DurableExecutionArn=arn, CheckpointToken="stale")
assert e.response["Error"]["Message"].startswith("Invalid checkpoint token"), e.response
other = client(f"STKD{ACCOUNT}billing", hmac.new(
    os.environ["STOKE_SECRET"].encode(), f"stoke-durable-v1\n{ACCOUNT}\nbilling".encode(), hashlib.sha256
).hexdigest())
expect_error("AccessDeniedException", other.checkpoint_durable_execution, DurableExecutionArn=arn, CheckpointToken="x")
expect_error("InvalidSignatureException", client(f"STKD{ACCOUNT}orders", "0" * 64).list_functions)
# Another account reaches none of these executions: with its own key, nor with its function's of the same name.
other_account = os.environ["STOKE_OTHER_ACCOUNT"]
outsider = client(os.environ["STOKE_OTHER_AKID"], os.environ["STOKE_OTHER_SECRET"])
expect_error("ResourceNotFoundException", outsider.get_durable_execution, DurableExecutionArn=arn)
expect_error("ResourceNotFoundException", outsider.get_durable_execution_history, DurableExecutionArn=arn)
expect_error("ResourceNotFoundException", outsider.stop_durable_execution, DurableExecutionArn=sleeping)
expect_error("ResourceNotFoundException", outsider.send_durable_execution_callback_success, CallbackId=callback_id, Result=b"x")
outsider_fn = client(f"STKD{other_account}orders", hmac.new(
    os.environ["STOKE_OTHER_SECRET"].encode(), f"stoke-durable-v1\n{other_account}\norders".encode(), hashlib.sha256
).hexdigest())
expect_error("ResourceNotFoundException", outsider_fn.checkpoint_durable_execution, DurableExecutionArn=arn, CheckpointToken="x")
expect_error("ResourceNotFoundException", outsider_fn.get_durable_execution_state, DurableExecutionArn=arn, CheckpointToken="x")
print("a durable function's key reaches only its own function's checkpoints; another account's reach nothing")

# A chained invoke of a plain function: its answer is the result, and the history says what ran.
lam.create_function(
    FunctionName="plain", Runtime="python3.12", Role=f"arn:aws:iam::{ACCOUNT}:role/x", Handler="app.handler",
    Code={"ZipFile": code("def handler(e, c):\n    return {'echo': e}\n")},
)
resp = lam.invoke(FunctionName="orders", Qualifier="$LATEST", Payload=json.dumps({"mode": "chain", "target": "plain"}))
assert json.loads(resp["Payload"].read()) == {"echo": {"from": "orders"}}, resp
chained = history(resp["DurableExecutionArn"])
started = [e for e in chained if e["EventType"] == "ChainedInvokeStarted"]
assert started and started[0]["Name"] == "call", chained
details = started[0]["ChainedInvokeStartedDetails"]
assert details["FunctionName"] == "plain" and details["ExecutedVersion"] == "$LATEST", details
assert "DurableExecutionArn" not in details, details  # plain: no execution of its own
assert [e["EventType"] for e in chained].count("ChainedInvokeSucceeded") == 1, chained
resp = lam.invoke(FunctionName="orders", Qualifier="$LATEST", Payload=json.dumps({"mode": "chain", "target": "missing"}))
assert resp.get("FunctionError") == "Unhandled", resp
failed = [e for e in history(resp["DurableExecutionArn"]) if e["EventType"] == "ChainedInvokeFailed"]
assert failed[0]["ChainedInvokeFailedDetails"]["Error"]["Payload"]["ErrorType"] == "ResourceNotFoundException", failed
print("a chained invoke calls a plain function; one that does not exist fails the call")

# Bad input gets Lambda's errors.
e = expect_error("InvalidParameterValueException", lam.update_function_configuration, FunctionName="plain", DurableConfig={"ExecutionTimeout": 60})
assert "only when it is created" in e.response["Error"]["Message"], e.response
expect_error("ValidationException", lam.create_function, FunctionName="late", Runtime="python3.12", Role=f"arn:aws:iam::{ACCOUNT}:role/x",
             Handler="app.handler", Code={"ZipFile": code("")}, DurableConfig={"ExecutionTimeout": 31622401})
updated = lam.update_function_configuration(FunctionName="orders", DurableConfig={"RetentionPeriodInDays": 30})
assert updated["DurableConfig"] == {"ExecutionTimeout": 300, "RetentionPeriodInDays": 30}, updated
expect_error("ResourceNotFoundException", lam.get_durable_execution, DurableExecutionArn=arn.replace(arn.rsplit("/", 1)[1], "0" * 32))
expect_error("ResourceNotFoundException", lam.list_durable_executions_by_function, FunctionName="missing")
print("bad input gets Lambda's errors")

# Two executions left running for the CLI's part of the test: one waits on a callback, one sleeps.
for name, mode in [("cli-callback", "callback"), ("cli-stop", "sleep")]:
    resp = lam.invoke(FunctionName="orders", Qualifier="$LATEST", InvocationType="Event",
                      DurableExecutionName=name, Payload=json.dumps({"mode": mode}))
    wait_for_event(resp["DurableExecutionArn"], "CallbackStarted" if mode == "callback" else "WaitStarted")
print("two executions wait for the CLI")

print("all checks passed")
