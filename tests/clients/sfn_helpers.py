"""What the Step Functions client scripts share: a boto3 client for the server under test (STOKE_ENDPOINT,
STOKE_AKID, STOKE_SECRET, STOKE_ACCOUNT), running a state machine to its end, and reading a history."""
import json
import os
import time

import boto3
from botocore.config import Config


ACCOUNT = os.environ["STOKE_ACCOUNT"]
PREFIX = f"arn:aws:states:us-east-1:{ACCOUNT}"
ROLE = "arn:aws:iam::1:role/x"
sfn = boto3.client(
    "stepfunctions",
    endpoint_url=os.environ["STOKE_ENDPOINT"],
    region_name="us-east-1",
    aws_access_key_id=os.environ["STOKE_AKID"],
    aws_secret_access_key=os.environ["STOKE_SECRET"],
    config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=60),
)


def run(name, definition, payload):
    """Creates the state machine, starts it with `payload` and waits (60 s at most) for its end."""
    sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=ROLE)
    arn = sfn.start_execution(stateMachineArn=f"{PREFIX}:stateMachine:{name}", input=json.dumps(payload))["executionArn"]
    deadline = time.time() + 60
    while True:
        e = sfn.describe_execution(executionArn=arn)
        if e["status"] != "RUNNING":
            return e
        assert time.time() < deadline, e
        time.sleep(0.1)


def events(arn):
    return sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
