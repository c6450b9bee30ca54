"""Drives stoke's schedules with an unmodified boto3 `scheduler` client (EventBridge Scheduler's API).

Run by crates/stoke/tests/clients.rs against a real server (process sandbox); reads STOKE_ENDPOINT, STOKE_AKID,
STOKE_SECRET and STOKE_ACCOUNT from the environment. Every step asserts; the first failure exits non-zero.
"""
import datetime
import io
import json
import os
import tempfile
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


def zip_of(source):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", source)
    return buf.getvalue()


RECORDER = """
import json, os

def handler(event, context):
    # Written beside and renamed, so the test never reads a file the handler is still writing.
    path = os.path.join(os.environ['OUT'], context.aws_request_id)
    with open(path + '.part', 'w') as f:
        f.write(json.dumps(event))
    os.rename(path + '.part', path)
"""

sch, lam = client("scheduler"), client("lambda")
out = tempfile.mkdtemp()
lam.create_function(FunctionName="ticker", Runtime="python3.12", Role="arn:aws:iam::000000000000:role/x",
                    Handler="app.handler", Code={"ZipFile": zip_of(RECORDER)},
                    Environment={"Variables": {"OUT": out}})
arn = lam.get_function(FunctionName="ticker")["Configuration"]["FunctionArn"]
role = f"arn:aws:iam::{ACCOUNT}:role/scheduler"

# Create, read back, replace (UpdateSchedule is a whole replacement), list, delete.
made = sch.create_schedule(Name="tick", ScheduleExpression="rate(5 minutes)", FlexibleTimeWindow={"Mode": "OFF"},
                           Target={"Arn": arn, "RoleArn": role, "Input": json.dumps({"n": 1})},
                           Description="every five minutes")
assert made["ScheduleArn"] == f"arn:aws:scheduler:us-east-1:{ACCOUNT}:schedule/default/tick", made
got = sch.get_schedule(Name="tick")
assert (got["Name"], got["GroupName"], got["State"]) == ("tick", "default", "ENABLED"), got
assert got["ScheduleExpression"] == "rate(5 minutes)" and got["ScheduleExpressionTimezone"] == "UTC", got
assert got["FlexibleTimeWindow"] == {"Mode": "OFF"} and got["Description"] == "every five minutes", got
assert got["Target"]["Arn"] == arn and json.loads(got["Target"]["Input"]) == {"n": 1}, got
assert got["Target"]["RetryPolicy"] == {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185}, got
assert isinstance(got["CreationDate"], datetime.datetime), got
sch.update_schedule(Name="tick", ScheduleExpression="cron(0 12 ? * MON-FRI *)",
                    ScheduleExpressionTimezone="America/New_York",
                    FlexibleTimeWindow={"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15},
                    Target={"Arn": arn, "RoleArn": role,
                            "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 600}},
                    State="DISABLED")
got = sch.get_schedule(Name="tick")
assert got["ScheduleExpression"] == "cron(0 12 ? * MON-FRI *)", got
assert got["ScheduleExpressionTimezone"] == "America/New_York" and got["State"] == "DISABLED", got
assert got["FlexibleTimeWindow"] == {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15}, got
assert "Input" not in got["Target"] and got["Description"] == "", "what the update left out is reset: " + str(got)
assert got["Target"]["RetryPolicy"] == {"MaximumEventAgeInSeconds": 600, "MaximumRetryAttempts": 3}, got
sch.create_schedule(Name="tock", ScheduleExpression="rate(1 hour)", FlexibleTimeWindow={"Mode": "OFF"},
                    Target={"Arn": arn, "RoleArn": role})
names = lambda **kw: [s["Name"] for s in sch.list_schedules(**kw)["Schedules"]]
assert names() == ["tick", "tock"], names()
assert names(NamePrefix="to") == ["tock"]
assert names(State="DISABLED") == ["tick"]
page = sch.list_schedules(MaxResults=1)
assert [s["Name"] for s in page["Schedules"]] == ["tick"] and page["NextToken"], page
page = sch.list_schedules(MaxResults=1, NextToken=page["NextToken"])
assert [s["Name"] for s in page["Schedules"]] == ["tock"] and "NextToken" not in page, page
summary = sch.list_schedules()["Schedules"][0]
assert summary["Target"] == {"Arn": arn} and summary["Arn"].endswith(":schedule/default/tick"), summary
paginated = [s["Name"] for p in sch.get_paginator("list_schedules").paginate(PaginationConfig={"PageSize": 1})
             for s in p["Schedules"]]
assert paginated == ["tick", "tock"], paginated

# A one-time schedule a few seconds away runs the function with its input, its context attributes replaced,
# and is deleted once done (ActionAfterCompletion).
due = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(seconds=3)
at = due.strftime("%Y-%m-%dT%H:%M:%S")
sch.create_schedule(Name="once", ScheduleExpression=f"at({at})", FlexibleTimeWindow={"Mode": "OFF"},
                    ActionAfterCompletion="DELETE",
                    Target={"Arn": arn, "RoleArn": role,
                            "Input": json.dumps({"when": "<aws.scheduler.scheduled-time>",
                                                 "id": "<aws.scheduler.execution-id>"})})
deadline = time.time() + 30
done = lambda: [name for name in os.listdir(out) if not name.endswith(".part")]
while not done():
    assert time.time() < deadline, "the one-time schedule did not run the function"
    time.sleep(0.2)
[request_id] = done()
event = json.load(open(os.path.join(out, request_id)))
assert event == {"when": at + "Z", "id": request_id}, event
deadline = time.time() + 10
while "once" in names():
    assert time.time() < deadline, "the one-time schedule was not deleted after it fired"
    time.sleep(0.2)

# Scheduler's errors.
e = expect_error("ValidationException", sch.create_schedule, Name="bad", ScheduleExpression="cron(0 1 * * * *)",
                 FlexibleTimeWindow={"Mode": "OFF"}, Target={"Arn": arn, "RoleArn": role})
assert e.response["Error"]["Message"].startswith("Invalid Schedule Expression cron(0 1 * * * *)."), e.response
assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400
expect_error("ValidationException", sch.create_schedule, Name="bad", ScheduleExpression="rate(10 seconds)",
             FlexibleTimeWindow={"Mode": "OFF"}, Target={"Arn": arn, "RoleArn": role})
expect_error("ValidationException", sch.create_schedule, Name="bad", ScheduleExpression="rate(1 hour)",
             FlexibleTimeWindow={"Mode": "OFF"}, Target={"Arn": arn, "RoleArn": "not-a-role"})
expect_error("ValidationException", sch.create_schedule, Name="bad", ScheduleExpression="rate(1 hour)",
             FlexibleTimeWindow={"Mode": "OFF"}, Target={"Arn": arn.replace(":ticker", ":nope"), "RoleArn": role})
expect_error("ValidationException", sch.create_schedule, Name="bad", ScheduleExpression="rate(1 hour)",
             ScheduleExpressionTimezone="Mars/Olympus", FlexibleTimeWindow={"Mode": "OFF"},
             Target={"Arn": arn, "RoleArn": role})
e = expect_error("ConflictException", sch.create_schedule, Name="tock", ScheduleExpression="rate(1 hour)",
                 FlexibleTimeWindow={"Mode": "OFF"}, Target={"Arn": arn, "RoleArn": role})
assert "Schedule tock already exists." in e.response["Error"]["Message"], e.response
e = expect_error("ResourceNotFoundException", sch.get_schedule, Name="nope")
assert e.response["Error"]["Message"] == "Schedule nope does not exist.", e.response
assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404
e = expect_error("ResourceNotFoundException", sch.get_schedule, Name="tick", GroupName="other")
assert "Schedule group other does not exist" in e.response["Error"]["Message"], e.response
expect_error("ResourceNotFoundException", sch.update_schedule, Name="nope", ScheduleExpression="rate(1 hour)",
             FlexibleTimeWindow={"Mode": "OFF"}, Target={"Arn": arn, "RoleArn": role})
assert names() == ["tick", "tock"], "a refused request wrote nothing"
assert sch.get_schedule_group(Name="default")["State"] == "ACTIVE"
assert [g["Name"] for g in sch.list_schedule_groups()["ScheduleGroups"]] == ["default"]

# Pages filtered by state hold every match: a page that fills in the middle of a read says there is more.
for name, state in [("pg-a", "ENABLED"), ("pg-b", "DISABLED"), ("pg-c", "DISABLED"), ("pg-d", "ENABLED"),
                    ("pg-e", "ENABLED")]:
    sch.create_schedule(Name=name, ScheduleExpression="rate(1 hour)", FlexibleTimeWindow={"Mode": "OFF"},
                        State=state, Target={"Arn": arn, "RoleArn": role})
enabled = [s["Name"] for p in sch.get_paginator("list_schedules").paginate(
    NamePrefix="pg-", State="ENABLED", PaginationConfig={"PageSize": 2}) for s in p["Schedules"]]
assert enabled == ["pg-a", "pg-d", "pg-e"], enabled
for name in ["pg-a", "pg-b", "pg-c", "pg-d", "pg-e"]:
    sch.delete_schedule(Name=name)

sch.delete_schedule(Name="tick")
sch.delete_schedule(Name="tock")
expect_error("ResourceNotFoundException", sch.delete_schedule, Name="tock")
assert names() == []
print("all checks passed")
