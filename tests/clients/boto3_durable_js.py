"""A durable function in JavaScript, built with AWS's @aws/durable-execution-sdk-js unchanged, on stoke.

Publishes the SDK (tests/durable/node/node_modules, installed by scripts/test with npm) as a layer, creates a
nodejs durable function with steps, a wait and a callback, and checks its result and its history. Prints "all
checks passed".
"""

import io
import json
import os
import time
import zipfile

from durable_helpers import ACCOUNT, history, lam, wait_for, wait_for_event

MODULES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "durable", "node", "node_modules")

HANDLER = """
const { withDurableExecution } = require("@aws/durable-execution-sdk-js");

exports.handler = withDurableExecution(async (event, context) => {
  const order = await context.step("reserve", async () => ({ id: event.id, items: event.items.length }));
  await context.wait("cool-off", { seconds: 1 });
  const approval = await context.waitForCallback("approval", async (callbackId) => {}, { timeout: { seconds: 60 } });
  const shipped = await context.step("ship", async () => `${order.id} shipped (${approval})`);
  return { order, shipped };
});
"""


def js_layer():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for root, _, files in os.walk(MODULES):
            for name in files:
                path = os.path.join(root, name)
                z.write(path, "nodejs/node_modules/" + os.path.relpath(path, MODULES))
    return out.getvalue()


def code():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("index.js", HANDLER)
    return out.getvalue()


layer = lam.publish_layer_version(LayerName="durable-sdk-js", Content={"ZipFile": js_layer()})
lam.create_function(
    FunctionName="orders-js",
    Runtime="nodejs20.x",
    Role=f"arn:aws:iam::{ACCOUNT}:role/durable",
    Handler="index.handler",
    Code={"ZipFile": code()},
    Timeout=30,
    MemorySize=256,
    Layers=[layer["LayerVersionArn"]],
    DurableConfig={"ExecutionTimeout": 300},
)
resp = lam.invoke(
    FunctionName="orders-js", Qualifier="$LATEST", InvocationType="Event",
    Payload=json.dumps({"id": "o-7", "items": ["a", "b"]}),
)
arn = resp["DurableExecutionArn"]
callback = wait_for_event(arn, "CallbackStarted")["CallbackStartedDetails"]["CallbackId"]
lam.send_durable_execution_callback_success(CallbackId=callback, Result=b"approved")
done = wait_for(arn, "SUCCEEDED")
assert json.loads(done["Result"]) == {"order": {"id": "o-7", "items": 2}, "shipped": "o-7 shipped (approved)"}, done
kinds = [e["EventType"] for e in history(arn)]
for kind in ["StepSucceeded", "WaitStarted", "WaitSucceeded", "CallbackStarted", "CallbackSucceeded", "ExecutionSucceeded"]:
    assert kind in kinds, kinds
assert kinds.count("StepSucceeded") >= 2 and kinds[0] == "ExecutionStarted", kinds
print("a JavaScript durable function ran steps, a wait and a callback")
print("all checks passed")
