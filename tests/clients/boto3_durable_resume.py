"""A durable function that waits: `deploy` creates it; `run PAUSE` runs one execution (a step, a wait of PAUSE
seconds, a step) to its end; `start PAUSE` starts one (an Event invoke) and returns. Both print the execution's
ARN for the test to follow it."""

import json
import sys

from durable_helpers import create_orders, lam

if sys.argv[1] == "deploy":
    create_orders()
    print("deployed; all checks passed")
else:
    payload = json.dumps({"mode": "steps", "n": 1, "pause": int(sys.argv[2])})
    if sys.argv[1] == "start":
        resp = lam.invoke(FunctionName="orders", Qualifier="$LATEST", InvocationType="Event", Payload=payload)
        assert resp["StatusCode"] == 202, resp
    else:
        resp = lam.invoke(FunctionName="orders", Qualifier="$LATEST", Payload=payload)
        body = json.loads(resp["Payload"].read())
        assert resp["StatusCode"] == 200 and "FunctionError" not in resp and body == {"result": 4}, (resp, body)
    print("execution:", resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"])
    print("all checks passed")
