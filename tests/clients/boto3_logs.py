"""A function's LoggingConfig through the Lambda API and its logs through CloudWatch Logs' FilterLogEvents, with
unmodified boto3 `lambda` and `logs` clients.

Run by crates/stoke/tests/clients.rs against a real server (process sandbox); reads STOKE_ENDPOINT, STOKE_AKID,
STOKE_SECRET and STOKE_ACCOUNT from the environment. Every step asserts; the first failure exits non-zero.
"""
import io
import json
import os
import time
import zipfile

import boto3
from botocore.config import Config

from aws_errors import expect_error

ENDPOINT = os.environ["STOKE_ENDPOINT"]
ACCOUNT = os.environ["STOKE_ACCOUNT"]
CONFIG = Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=60)


def client(service):
    return boto3.client(service, endpoint_url=ENDPOINT, region_name="us-east-1",
                        aws_access_key_id=os.environ["STOKE_AKID"],
                        aws_secret_access_key=os.environ["STOKE_SECRET"], config=CONFIG)


lam, logs = client("lambda"), client("logs")

SOURCE = """
import logging

log = logging.getLogger("orders")

def handler(event, context):
    print("plain line for " + event["id"])
    log.debug("debug detail for %s", event["id"])
    log.info("order received", extra={"orderId": event["id"]})
    log.warning("stock is low for %s", event["id"])
    return "ok"
"""


def zipped(source):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", source)
    return buf.getvalue()


def create(name, **extra):
    return lam.create_function(FunctionName=name, Runtime="python3.12", Role=f"arn:aws:iam::{ACCOUNT}:role/logs",
                               Handler="app.handler", Code={"ZipFile": zipped(SOURCE)}, **extra)


def events(group, pattern=None, start=0):
    kwargs = {"logGroupName": group, "startTime": start}
    if pattern is not None:
        kwargs["filterPattern"] = pattern
    found, token = [], None
    while True:
        page = logs.filter_log_events(**kwargs, **({"nextToken": token} if token else {}))
        found += page["events"]
        token = page.get("nextToken")
        if not token:
            return found


# A JSON-logging function: Lambda's LoggingConfig in, out, and in the instance's environment.
made = create("orders", LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "INFO"})
assert made["LoggingConfig"] == {"LogFormat": "JSON", "ApplicationLogLevel": "INFO", "SystemLogLevel": "INFO",
                                 "LogGroup": "/aws/lambda/orders"}, made["LoggingConfig"]
plain = create("plain")
assert plain["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": "/aws/lambda/plain"}, plain["LoggingConfig"]
print("LoggingConfig is set and read as Lambda has it")

started = int(time.time() * 1000) - 1000
for i in ("a-1", "a-2"):
    assert lam.invoke(FunctionName="orders", Payload=json.dumps({"id": i}))["StatusCode"] == 200
    assert lam.invoke(FunctionName="plain", Payload=json.dumps({"id": i}))["StatusCode"] == 200

# JSON records: Lambda's fields and the record's own, one event each, at the configured level.
records = [json.loads(e["message"]) for e in events("/aws/lambda/orders", '{ $.logger = "orders" }', started)]
assert [r["message"] for r in records] == ["order received", "stock is low for a-1", "order received",
                                           "stock is low for a-2"], records
first = records[0]
assert first["level"] == "INFO" and first["orderId"] == "a-1" and first["requestId"], first
assert first["timestamp"].endswith("Z"), first
assert records[1]["level"] == "WARN", records[1]
assert not any("debug detail" in e["message"] for e in events("/aws/lambda/orders")), "DEBUG is below INFO"
only = events("/aws/lambda/orders", '{ ($.orderId = "a-2") && ($.level = "INFO") }', started)
assert len(only) == 1 and json.loads(only[0]["message"])["orderId"] == "a-2", only
print("JSON records carry Lambda's fields and their own, and JSON filter patterns select them")

# Text patterns over any line; print() stays a plain line; the time window and paging hold.
assert len(events("/aws/lambda/orders", '"plain line for"', started)) == 2
assert len(events("/aws/lambda/orders", '"plain line" -a-1', started)) == 1
assert events("/aws/lambda/orders", "plain", int(time.time() * 1000) + 60_000) == []
every = events("/aws/lambda/plain", None, started)
assert any(e["message"].startswith("REPORT RequestId") for e in every), every
assert not any('"level"' in e["message"] for e in every), "a Text function's logging is not JSON"
page = logs.filter_log_events(logGroupName="/aws/lambda/orders", startTime=started, limit=1)
assert len(page["events"]) == 1 and page.get("nextToken"), page
rest = logs.filter_log_events(logGroupName="/aws/lambda/orders", startTime=started, limit=1, nextToken=page["nextToken"])
assert rest["events"][0]["eventId"] != page["events"][0]["eventId"], (page, rest)
print("text patterns, time windows and pages work as CloudWatch Logs' do")

# Node: each console call a JSON record at the configured level and above.
NODE = """
exports.handler = async (event) => {
  console.log('info line', event.id);
  console.warn('warn line', { a: 1 });
  console.error(new Error('boom'));
  return 'ok';
};
"""
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w") as z:
    z.writestr("index.js", NODE)
lam.create_function(FunctionName="nodelog", Runtime="nodejs20.x", Role=f"arn:aws:iam::{ACCOUNT}:role/logs",
                    Handler="index.handler", Code={"ZipFile": buf.getvalue()},
                    LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "WARN"})
assert lam.invoke(FunctionName="nodelog", Payload=json.dumps({"id": "n-1"}))["StatusCode"] == 200
records = [json.loads(e["message"]) for e in events("/aws/lambda/nodelog", "{ $.level = * }", started)]
assert [(r["level"], r["message"]) for r in records] == [("WARN", "warn line { a: 1 }"), ("ERROR", "boom")], records
assert records[1]["errorType"] == "Error" and records[1]["requestId"] == records[0]["requestId"], records
assert records[0]["timestamp"].endswith("Z"), records
print("Node's console writes JSON records at the configured level")

# A log group of its own.
lam.update_function_configuration(FunctionName="plain", LoggingConfig={"LogFormat": "Text", "LogGroup": "/custom/plain"})
assert lam.get_function_configuration(FunctionName="plain")["LoggingConfig"]["LogGroup"] == "/custom/plain"
assert any(e["message"].startswith("REPORT") for e in events("/custom/plain", "REPORT", started))
expect_error("ResourceNotFoundException", logs.filter_log_events, logGroupName="/aws/lambda/plain")
print("a function's own log group is where its logs are read")

# Mistakes: clear errors, nothing changed.
expect_error("ValidationException", lam.update_function_configuration, FunctionName="orders",
             LoggingConfig={"LogFormat": "XML"})
e = expect_error("InvalidParameterValueException", lam.update_function_configuration, FunctionName="plain",
                 LoggingConfig={"LogFormat": "Text", "ApplicationLogLevel": "DEBUG"})
assert "JSON" in e.response["Error"]["Message"], e.response
expect_error("InvalidParameterValueException", lam.update_function_configuration, FunctionName="orders",
             LoggingConfig={"LogFormat": "JSON", "SystemLogLevel": "TRACE"})
assert lam.get_function_configuration(FunctionName="orders")["LoggingConfig"]["ApplicationLogLevel"] == "INFO"
expect_error("ResourceNotFoundException", logs.filter_log_events, logGroupName="/aws/lambda/nobody")
e = expect_error("InvalidParameterException", logs.filter_log_events, logGroupName="/aws/lambda/orders",
                 filterPattern="{ $.level = ")
e = expect_error("InvalidParameterException", logs.filter_log_events, logGroupName="/aws/lambda/orders",
                 filterPattern="[ip, user]")
assert "space-delimited" in e.response["Error"]["Message"], e.response
expect_error("InvalidParameterException", logs.filter_log_events, logGroupName="/aws/lambda/orders", nextToken="bogus")
print("bad settings and bad queries are refused with AWS's errors")
print("all checks passed")
