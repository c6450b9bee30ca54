"""Fills the file system under a running stoke server while functions are created and Event invocations
accepted, through the native API and with boto3; prints what was accepted and refused as one JSON line.

Run by crates/stoke/tests/full_disk.rs, which made the small file system, started the server on it, and
checks afterwards that nothing accepted was lost and that the server recovers once space is freed. Reads
STOKE_ENDPOINT, STOKE_API_KEY, STOKE_AKID, STOKE_SECRET, FILL_DIR (on the small file system) and MARK_DIR
(elsewhere: where the function records the events it ran).
"""
import base64
import io
import json
import os
import urllib.error
import urllib.request
import zipfile

import boto3
from botocore.config import Config

ENDPOINT = os.environ["STOKE_ENDPOINT"]
KEY = os.environ["STOKE_API_KEY"]
FILL = os.environ["FILL_DIR"]
MARK = os.environ["MARK_DIR"]

lam = boto3.client(
    "lambda",
    endpoint_url=ENDPOINT,
    region_name="us-east-1",
    aws_access_key_id=os.environ["STOKE_AKID"],
    aws_secret_access_key=os.environ["STOKE_SECRET"],
    config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=60),
)


def zip_of(source):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", source)
        # Incompressible padding, so that each new function takes real space.
        z.writestr("pad.bin", os.urandom(256 * 1024), compress_type=zipfile.ZIP_STORED)
    return buf.getvalue()


def native_create(name):
    body = json.dumps({
        "name": name, "runtime": "python3.12", "handler": "app.handler",
        "code_base64": base64.b64encode(zip_of("def handler(e, c):\n    return 1\n")).decode(),
    }).encode()
    req = urllib.request.Request(ENDPOINT + "/v1/functions", data=body, method="POST",
                                 headers={"Authorization": "Bearer " + KEY, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, {}, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}"), dict(e.headers)


out = {"created": [], "refused_creates": [], "accepted": [], "refused_events": [], "unexpected": [],
       "retry_after": []}
filler = 0
refusals_in_a_row = 0
n = 0
while refusals_in_a_row < 12 and n < 2000:
    n += 1
    # Take a little more space each round, until the file system is full.
    try:
        with open(os.path.join(FILL, f"fill-{filler}"), "wb") as f:
            f.write(b"\0" * (384 * 1024))
        filler += 1
    except OSError:
        pass
    refused = False
    name = f"made-{n}"
    status, body, headers = native_create(name)
    if status == 201:
        out["created"].append(name)
    elif status == 507 and body.get("error", {}).get("code") == "insufficient_storage":
        out["refused_creates"].append(name)
        out["retry_after"].append(headers.get("Retry-After") or headers.get("retry-after"))
        refused = True
    else:
        out["unexpected"].append({"op": "create", "status": status, "body": body})
    try:
        r = lam.invoke(FunctionName="counter", InvocationType="Event", Payload=json.dumps({"n": n, "mark": MARK}))
        if r["StatusCode"] == 202:
            out["accepted"].append(n)
        else:
            out["unexpected"].append({"op": "event", "status": r["StatusCode"]})
    except lam.exceptions.ServiceException as e:
        out["unexpected"].append({"op": "event", "error": str(e)})
    except Exception as e:  # noqa: BLE001 - the error is what is checked
        resp = getattr(e, "response", {})
        status = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = resp.get("Error", {}).get("Code")
        if status == 503 and code == "ServiceUnavailableException" and "disk is full" in str(e):
            out["refused_events"].append(n)
            refused = True
        else:
            out["unexpected"].append({"op": "event", "status": status, "code": code, "error": str(e)})
    refusals_in_a_row = refusals_in_a_row + 1 if refused else 0
# A function whose code has not been unpacked yet ("lazy", 2 MiB unpacked): free a little space, less than
# its code needs. Its Event invocation is accepted (the record is small) but cannot start; a synchronous
# one is refused as the platform's failure, not reported as the function's.
for i in range(2):
    try:
        os.remove(os.path.join(FILL, f"fill-{i}"))
    except OSError:
        pass
st = os.statvfs(FILL)
out["free_bytes_for_lazy"] = st.f_bavail * st.f_frsize
try:
    r = lam.invoke(FunctionName="lazy", InvocationType="Event", Payload=json.dumps({"n": 100000, "mark": MARK}))
    out["lazy_event"] = r["StatusCode"]
except Exception as e:  # noqa: BLE001
    out["lazy_event"] = str(e)
try:
    r = lam.invoke(FunctionName="lazy", Payload=json.dumps({"n": 100001, "mark": MARK}))
    out["lazy_sync"] = {"status": r["StatusCode"], "function_error": r.get("FunctionError"),
                        "payload": r["Payload"].read().decode()}
except Exception as e:  # noqa: BLE001
    resp = getattr(e, "response", {})
    out["lazy_sync"] = {"status": resp.get("ResponseMetadata", {}).get("HTTPStatusCode"),
                        "code": resp.get("Error", {}).get("Code"), "message": str(e)}
print(json.dumps(out))
