"""A durable execution outlives its server: `start` begins one that waits, `finish` (after the server was
killed with SIGKILL and started again, on another port) sees it end, with its wait recorded once.

Run as `boto3_durable_crash.py start` (prints the execution's ARN to the file STOKE_DURABLE_ARN) and then
`boto3_durable_crash.py finish`. Prints "all checks passed".
"""

import json
import os
import sys

from durable_helpers import create_orders, history, lam, wait_for, wait_for_event

ARN_FILE = os.environ["STOKE_DURABLE_ARN"]

if sys.argv[1] == "start":
    create_orders()
    resp = lam.invoke(
        FunctionName="orders", Qualifier="$LATEST", InvocationType="Event",
        Payload=json.dumps({"mode": "steps", "n": 1, "pause": 4}),
    )
    arn = resp["DurableExecutionArn"]
    wait_for_event(arn, "WaitStarted")
    with open(ARN_FILE, "w") as f:
        f.write(arn)
    print("an execution waits")
else:
    with open(ARN_FILE) as f:
        arn = f.read()
    done = wait_for(arn, "SUCCEEDED")
    assert json.loads(done["Result"]) == {"result": 4}, done
    kinds = [e["EventType"] for e in history(arn)]
    # Each step and the wait once: what was checkpointed before the crash is replayed, not run again.
    assert kinds.count("StepStarted") == 2 and kinds.count("WaitStarted") == 1, kinds
    assert kinds.count("WaitSucceeded") == 1 and kinds[-1] == "ExecutionSucceeded", kinds
    print("the execution ended after the server's restart")
print("all checks passed")
