"""Drives stoke's Step Functions-compatible API with an unmodified boto3 client.

Run by crates/stoke/tests/clients.rs against a real server that already has a function named `double`;
reads STOKE_ENDPOINT, STOKE_AKID, STOKE_SECRET and STOKE_ACCOUNT from the environment. Every step asserts;
the first failure exits non-zero.
"""
import json
import os
import time

import boto3
from botocore.config import Config

from aws_errors import expect_error

ENDPOINT = os.environ["STOKE_ENDPOINT"]
ACCOUNT = os.environ["STOKE_ACCOUNT"]
# StartSyncExecution carries a "sync-" host prefix on AWS; an endpoint given as an IP address needs it off.
CONFIG = Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=60, inject_host_prefix=False)

sfn = boto3.client(
    "stepfunctions",
    endpoint_url=ENDPOINT,
    region_name="us-east-1",
    aws_access_key_id=os.environ["STOKE_AKID"],
    aws_secret_access_key=os.environ["STOKE_SECRET"],
    config=CONFIG,
)

DEFINITION = {
    "Comment": "written for AWS, run unchanged",
    "StartAt": "Double",
    "States": {
        "Double": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:double", "Payload.$": "$"},
            "OutputPath": "$.Payload",
            "Retry": [{"ErrorEquals": ["Lambda.TooManyRequestsException"], "MaxAttempts": 2}],
            "Next": "Wait",
        },
        "Wait": {"Type": "Wait", "Seconds": 0, "Next": "Done"},
        "Done": {"Type": "Succeed"},
    },
}


created = sfn.create_state_machine(name="doubler", definition=json.dumps(DEFINITION), roleArn="arn:aws:iam::123456789012:role/x")
arn = created["stateMachineArn"]
assert arn == f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:doubler", arn
expect_error("StateMachineAlreadyExists", sfn.create_state_machine, name="doubler", definition=json.dumps(DEFINITION), roleArn="r")
bad = dict(DEFINITION, StartAt="Nowhere")
e = expect_error("InvalidDefinition", sfn.create_state_machine, name="bad", definition=json.dumps(bad), roleArn="r")
assert "StartAt" in e.response["Error"]["Message"], e.response

described = sfn.describe_state_machine(stateMachineArn=arn)
assert described["name"] == "doubler" and json.loads(described["definition"]) == DEFINITION, described
assert described["roleArn"] == "arn:aws:iam::123456789012:role/x", described
assert any(m["name"] == "doubler" for m in sfn.list_state_machines()["stateMachines"])
expect_error("StateMachineDoesNotExist", sfn.describe_state_machine, stateMachineArn=arn + "-nope")

sync = sfn.start_sync_execution(stateMachineArn=arn, input=json.dumps({"n": 21}))
assert sync["status"] == "SUCCEEDED", sync
assert json.loads(sync["output"]) == {"n": 42}, sync

started = sfn.start_execution(stateMachineArn=arn, name="second", input=json.dumps({"n": 5}))
exec_arn = started["executionArn"]
assert exec_arn.endswith(":execution:doubler:second"), exec_arn
expect_error("ExecutionAlreadyExists", sfn.start_execution, stateMachineArn=arn, name="second", input="{}")
expect_error("InvalidExecutionInput", sfn.start_execution, stateMachineArn=arn, input="{not json")
for _ in range(200):
    d = sfn.describe_execution(executionArn=exec_arn)
    if d["status"] != "RUNNING":
        break
    time.sleep(0.05)
assert d["status"] == "SUCCEEDED" and json.loads(d["output"]) == {"n": 10}, d
expect_error("ExecutionDoesNotExist", sfn.describe_execution, executionArn=exec_arn + "x")

history = sfn.get_execution_history(executionArn=exec_arn)["events"]
types = [h["type"] for h in history]
assert types[0] == "ExecutionStarted" and types[-1] == "ExecutionSucceeded", types
assert "TaskScheduled" in types and "TaskSucceeded" in types and "WaitStateExited" in types, types
# Each attempt of a lambda:invoke Task: TaskScheduled, TaskStarted, then its end (as recorded on AWS).
at = types.index("TaskScheduled")
assert types[at:at + 3] == ["TaskScheduled", "TaskStarted", "TaskSucceeded"], types
assert history[at + 1]["taskStartedEventDetails"] == {"resource": "invoke", "resourceType": "lambda"}, history[at + 1]
# The Task gives no TimeoutSeconds: Step Functions records no timeoutInSeconds then (test_lambda_invoke).
scheduled = history[at]["taskScheduledEventDetails"]
assert "timeoutInSeconds" not in scheduled and scheduled["resourceType"] == "lambda", scheduled
entered = next(h for h in history if h["type"] == "TaskStateEntered")
assert entered["stateEnteredEventDetails"]["name"] == "Double", entered
assert json.loads(entered["stateEnteredEventDetails"]["input"]) == {"n": 5}, entered

executions = sfn.list_executions(stateMachineArn=arn, statusFilter="SUCCEEDED")["executions"]
assert len(executions) == 2, executions

# With TimeoutSeconds, it is recorded.
timed = json.loads(json.dumps(DEFINITION))
timed["States"]["Double"]["TimeoutSeconds"] = 30
sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(timed))
ran = sfn.start_sync_execution(stateMachineArn=arn, input=json.dumps({"n": 1}))
assert ran["status"] == "SUCCEEDED", ran
timed_history = sfn.get_execution_history(executionArn=ran["executionArn"])["events"]
scheduled = next(h for h in timed_history if h["type"] == "TaskScheduled")["taskScheduledEventDetails"]
assert scheduled["timeoutInSeconds"] == 30, scheduled

slow = dict(DEFINITION, StartAt="Hold", States=dict(DEFINITION["States"], Hold={"Type": "Wait", "Seconds": 60, "Next": "Double"}))
sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(slow))
long_run = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
sfn.stop_execution(executionArn=long_run, error="Manual", cause="from boto3")
stopped = sfn.describe_execution(executionArn=long_run)
assert stopped["status"] == "ABORTED", stopped

# The role: kept as given, changed alone by UpdateStateMachine, recorded by each execution as it starts and
# read by the machine as $$.Execution.RoleArn (test_query_context_object_values records the role there).
ROLE2 = "arn:aws:iam::123456789012:role/second"
expect_error("MissingRequiredParameter", sfn.update_state_machine, stateMachineArn=arn)
sfn.update_state_machine(stateMachineArn=arn, roleArn=ROLE2)
described = sfn.describe_state_machine(stateMachineArn=arn)
assert described["roleArn"] == ROLE2 and json.loads(described["definition"]) == slow, described
expect_error("ValidationException", sfn.update_state_machine, stateMachineArn=arn, roleArn="r" * 257)
assert sfn.describe_state_machine(stateMachineArn=arn)["roleArn"] == ROLE2
roles = {"StartAt": "R", "States": {"R": {"Type": "Pass", "Parameters": {"role.$": "$$.Execution.RoleArn"}, "End": True}}}
sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(roles))
ran = sfn.start_sync_execution(stateMachineArn=arn, input="{}")
assert ran["status"] == "SUCCEEDED" and json.loads(ran["output"]) == {"role": ROLE2}, ran
first = sfn.get_execution_history(executionArn=ran["executionArn"])["events"][0]
assert first["executionStartedEventDetails"]["roleArn"] == ROLE2, first

sfn.delete_state_machine(stateMachineArn=arn)
expect_error("StateMachineDoesNotExist", sfn.describe_state_machine, stateMachineArn=arn)
print("all checks passed")
