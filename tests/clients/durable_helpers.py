"""Shared by the durable function client tests: clients, the SDK layer, the test function and history reads."""

import io
import os
import time
import zipfile

import boto3
from botocore.config import Config

ENDPOINT = os.environ["STOKE_ENDPOINT"]
ACCOUNT = os.environ["STOKE_ACCOUNT"]
WHEELS = os.environ["STOKE_DURABLE_WHEELS"]


def client(akid=os.environ["STOKE_AKID"], secret=os.environ["STOKE_SECRET"]):
    return boto3.client(
        "lambda",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=akid,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}, read_timeout=120),
    )


lam = client()


def sdk_layer():
    """The SDK and its dependencies, unpacked from their wheels under python/ (Lambda's layout)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for wheel in sorted(os.listdir(WHEELS)):
            if not wheel.endswith(".whl"):
                continue
            with zipfile.ZipFile(os.path.join(WHEELS, wheel)) as w:
                for item in w.infolist():
                    if item.is_dir():
                        continue
                    z.writestr("python/" + item.filename, w.read(item))
    return out.getvalue()


HANDLER = '''
from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration



@durable_execution
def handler(event, context: DurableContext):
    mode = event.get("mode", "steps")
    if mode == "steps":
        a = context.step(lambda _: event["n"] + 1, name="add")
        context.wait(Duration.from_seconds(event.get("pause", 1)), name="pause")
        b = context.step(lambda _: a * 2, name="double")
        return {"result": b}
    if mode == "callback":
        callback = context.create_callback(name="approval")
        return {"approved": callback.result()}
    if mode == "sleep":
        context.wait(Duration.from_seconds(600), name="long")
        return "woke"
    if mode == "chain":
        # A chained invoke of a function that is not durable: its answer is the result.
        return context.invoke(event["target"], {"from": "orders"}, name="call")
    if mode == "fail":
        context.step(lambda _: 1, name="one")
        raise ValueError("the order is not valid")
    raise ValueError("unknown mode")
'''


def code(source, helpers=None):
    """A function's zip: `source` as app.py, and `helpers` as conformance_helpers.py when given."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("app.py", source)
        if helpers is not None:
            z.writestr("conformance_helpers.py", helpers)
    return out.getvalue()


def create_orders():
    """Publishes the SDK layer and creates the durable function `orders`; returns its configuration."""
    layer = lam.publish_layer_version(
        LayerName="durable-sdk", Content={"ZipFile": sdk_layer()}, CompatibleRuntimes=["python3.12"]
    )
    return lam.create_function(
        FunctionName="orders",
        Runtime="python3.12",
        Role=f"arn:aws:iam::{ACCOUNT}:role/durable",
        Handler="app.handler",
        Code={"ZipFile": code(HANDLER)},
        Timeout=30,
        MemorySize=256,
        Layers=[layer["LayerVersionArn"]],
        DurableConfig={"ExecutionTimeout": 300, "RetentionPeriodInDays": 7},
    )


def history(arn):
    events, marker = [], None
    while True:
        kwargs = {"DurableExecutionArn": arn, "MaxItems": 5}
        if marker:
            kwargs["Marker"] = marker
        page = lam.get_durable_execution_history(**kwargs)
        events += page["Events"]
        marker = page.get("NextMarker")
        if not marker:
            return events


def wait_for(arn, status, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        got = lam.get_durable_execution(DurableExecutionArn=arn)
        if got["Status"] == status:
            return got
        time.sleep(0.2)
    raise AssertionError(f"{arn} is {got['Status']}, not {status}, after {limit} s")


def wait_for_event(arn, kind, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        for e in history(arn):
            if e["EventType"] == kind:
                return e
        time.sleep(0.2)
    raise AssertionError(f"no {kind} in {history(arn)}")
