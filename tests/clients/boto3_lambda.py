"""Drives stoke's Lambda-compatible API with an unmodified boto3 client.

Run by crates/stoke/tests/clients.rs against a real server; reads STOKE_ENDPOINT, STOKE_AKID and
STOKE_SECRET from the environment. Every step asserts; the first failure exits non-zero.
"""
import base64
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
CONFIG = Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=60)


def client(key=None, secret=None):
    return boto3.client(
        "lambda",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=key or os.environ["STOKE_AKID"],
        aws_secret_access_key=secret or os.environ["STOKE_SECRET"],
        config=CONFIG,
    )


def zip_of(source):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", source)
    return buf.getvalue()


V1 = '''
import json, os

def handler(event, context):
    if event.get("marker"):
        with open(event["marker"], "w") as f:
            f.write(context.aws_request_id)
    if event.get("tries"):
        with open(event["tries"], "a") as f:
            f.write(context.aws_request_id + " ")
    if event.get("fail"):
        raise ValueError("asked to fail")
    print("log line from v1")
    cc = context.client_context
    return {"v": 1, "event": event, "k": os.environ.get("K"),
            "custom": cc.custom if cc and hasattr(cc, "custom") else (cc or {}).get("custom") if isinstance(cc, dict) else None}
'''
V2 = "def handler(event, context):\n    return {'v': 2}\n"


def main():
    lam = client()
    created = lam.create_function(
        FunctionName="b3",
        Runtime="python3.12",
        Role="arn:aws:iam::123456789012:role/irrelevant",
        Handler="app.handler",
        Code={"ZipFile": zip_of(V1)},
        MemorySize=256,
        Timeout=10,
        Environment={"Variables": {"K": "from-env"}},
        Description="made by boto3",
    )
    assert created["State"] == "Active" and created["LastUpdateStatus"] == "Successful", created
    assert created["MemorySize"] == 256 and created["Version"] == "$LATEST", created
    # Ephemeral storage: Lambda's default, a new size, and a size past Lambda's range refused unchanged.
    assert created["EphemeralStorage"] == {"Size": 512}, created
    resized = lam.update_function_configuration(FunctionName="b3", EphemeralStorage={"Size": 2048})
    assert resized["EphemeralStorage"] == {"Size": 2048}, resized
    e = expect_error("ValidationException", lam.update_function_configuration, FunctionName="b3",
                     EphemeralStorage={"Size": 10241})
    assert "ephemeralStorage.size" in e.response["Error"]["Message"], e.response
    assert lam.get_function_configuration(FunctionName="b3")["EphemeralStorage"] == {"Size": 2048}
    lam.get_waiter("function_active_v2").wait(FunctionName="b3")
    lam.get_waiter("function_updated_v2").wait(FunctionName="b3")

    got = lam.get_function(FunctionName="b3")
    assert got["Configuration"]["Handler"] == "app.handler", got
    conf = lam.get_function_configuration(FunctionName="b3")
    assert conf["Environment"]["Variables"] == {"K": "from-env"}, conf
    names = [f["FunctionName"] for page in lam.get_paginator("list_functions").paginate() for f in page["Functions"]]
    assert names == ["b3"], names

    out = lam.invoke(FunctionName="b3", Payload=json.dumps({"x": 1}), LogType="Tail")
    assert out["StatusCode"] == 200 and out["ExecutedVersion"] == "$LATEST", out
    body = json.loads(out["Payload"].read())
    assert "v" in body, body
    assert body["v"] == 1 and body["event"] == {"x": 1} and body["k"] == "from-env", body
    log = base64.b64decode(out["LogResult"]).decode()
    assert "REPORT RequestId" in log and "log line from v1" in log, log

    ctx = base64.b64encode(json.dumps({"custom": {"who": "boto3"}}).encode()).decode()
    out = lam.invoke(FunctionName="b3", Payload=b"{}", ClientContext=ctx)
    assert json.loads(out["Payload"].read())["custom"] == {"who": "boto3"}

    failed = lam.invoke(FunctionName="b3", Payload=json.dumps({"fail": True}))
    assert failed["StatusCode"] == 200 and failed["FunctionError"] == "Unhandled", failed
    err = json.loads(failed["Payload"].read())
    assert err["errorType"] == "ValueError" and err["errorMessage"] == "asked to fail", err

    v1 = lam.publish_version(FunctionName="b3", Description="first")
    assert v1["Version"] == "1", v1
    lam.update_function_code(FunctionName="b3", ZipFile=zip_of(V2))
    lam.update_function_configuration(FunctionName="b3", Timeout=20)
    v2 = lam.publish_version(FunctionName="b3")
    assert v2["Version"] == "2" and v2["Timeout"] == 20, v2
    versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName="b3")["Versions"]]
    assert versions == ["$LATEST", "1", "2"], versions

    # Publish with the code update is one step; a CodeSha256 precondition is checked in the step that
    # publishes, so a stale hash publishes nothing.
    stale = lam.get_function_configuration(FunctionName="b3")["CodeSha256"]
    v3 = lam.update_function_code(FunctionName="b3", ZipFile=zip_of(V2 + "\n# three\n"), Publish=True)
    assert v3["Version"] == "3" and v3["CodeSha256"] != stale, v3
    lam.update_function_configuration(FunctionName="b3", Timeout=21)
    e = expect_error("PreconditionFailedException", lam.publish_version, FunctionName="b3", CodeSha256=stale)
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 412, e.response
    v4 = lam.publish_version(FunctionName="b3", CodeSha256=v3["CodeSha256"])
    assert v4["Version"] == "4" and v4["Timeout"] == 21, v4
    versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName="b3")["Versions"]]
    assert versions == ["$LATEST", "1", "2", "3", "4"], versions

    # RevisionId: a change made with the one read goes through; with it again (now stale), each change
    # is refused with 412 and changes nothing.
    rev = lam.get_function_configuration(FunctionName="b3")["RevisionId"]
    lam.update_function_configuration(FunctionName="b3", Timeout=22, RevisionId=rev)
    for call, kwargs in [(lam.update_function_configuration, {"Timeout": 23}),
                         (lam.update_function_code, {"ZipFile": zip_of(V2)}),
                         (lam.publish_version, {})]:
        e = expect_error("PreconditionFailedException", call, FunctionName="b3", RevisionId=rev, **kwargs)
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 412, e.response
    now = lam.get_function_configuration(FunctionName="b3")
    assert now["Timeout"] == 22 and now["RevisionId"] != rev, now
    versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName="b3")["Versions"]]
    assert versions == ["$LATEST", "1", "2", "3", "4"], versions
    made = lam.create_function(FunctionName="b3pub", Runtime="python3.12", Role="arn:aws:iam::000000000000:role/x",
                               Handler="app.handler", Code={"ZipFile": zip_of(V1)}, Publish=True)
    assert made["Version"] == "1", made
    versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName="b3pub")["Versions"]]
    assert versions == ["$LATEST", "1"], versions
    lam.delete_function(FunctionName="b3pub")

    alias = lam.create_alias(FunctionName="b3", Name="prod", FunctionVersion="1")
    assert alias["AliasArn"].endswith(":function:b3:prod"), alias
    assert json.loads(lam.invoke(FunctionName="b3", Qualifier="prod")["Payload"].read())["v"] == 1
    assert json.loads(lam.invoke(FunctionName="b3:prod")["Payload"].read())["v"] == 1
    # UpdateAlias with the alias's RevisionId goes through; with it again (now stale), 412 and no change.
    alias_rev = lam.get_alias(FunctionName="b3", Name="prod")["RevisionId"]
    lam.update_alias(FunctionName="b3", Name="prod", FunctionVersion="2", RevisionId=alias_rev)
    e = expect_error("PreconditionFailedException", lam.update_alias, FunctionName="b3", Name="prod",
                     FunctionVersion="1", RevisionId=alias_rev)
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 412, e.response
    assert lam.get_alias(FunctionName="b3", Name="prod")["FunctionVersion"] == "2"
    out = lam.invoke(FunctionName="b3", Qualifier="prod")
    assert out["ExecutedVersion"] == "2" and json.loads(out["Payload"].read())["v"] == 2
    assert [a["Name"] for a in lam.list_aliases(FunctionName="b3")["Aliases"]] == ["prod"]

    # DeleteFunction with a Qualifier deletes one version: refused while an alias routes to it (409); $LATEST
    # goes only with the function; a missing version is 404; a qualified ARN with the same Qualifier names
    # the same version.
    e = expect_error("ResourceConflictException", lam.delete_function, FunctionName="b3", Qualifier="2")
    assert "prod" in e.response["Error"]["Message"], e.response
    expect_error("InvalidParameterValueException", lam.delete_function, FunctionName="b3", Qualifier="$LATEST")
    expect_error("ResourceNotFoundException", lam.delete_function, FunctionName="b3", Qualifier="99")
    arn = lam.get_function_configuration(FunctionName="b3")["FunctionArn"]
    lam.delete_function(FunctionName=arn + ":3", Qualifier="3")
    versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName="b3")["Versions"]]
    assert versions == ["$LATEST", "1", "2", "4"], versions
    expect_error("ResourceNotFoundException", lam.invoke, FunctionName="b3", Qualifier="3")
    expect_error("ResourceNotFoundException", lam.delete_function, FunctionName="b3", Qualifier="3")

    dry = lam.invoke(FunctionName="b3", InvocationType="DryRun")
    assert dry["StatusCode"] == 204, dry

    marker = os.path.join(tempfile.mkdtemp(), "event-ran")
    ev = lam.invoke(FunctionName="b3:1", InvocationType="Event", Payload=json.dumps({"marker": marker}))
    assert ev["StatusCode"] == 202, ev
    deadline = time.time() + 30
    while not os.path.exists(marker):
        assert time.time() < deadline, "the Event invocation did not run"
        time.sleep(0.05)

    # A failing Event invocation is retried twice (Lambda's rule), every attempt under the request id its 202
    # named, so a function can tell a retry.
    tries = os.path.join(tempfile.mkdtemp(), "tries")
    ev = lam.invoke(FunctionName="b3:1", InvocationType="Event", Payload=json.dumps({"tries": tries, "fail": True}))
    request_id = ev["ResponseMetadata"]["RequestId"]
    deadline = time.time() + 30
    while not os.path.exists(tries) or len(open(tries).read().split()) < 3:
        assert time.time() < deadline, "the failing Event invocation was not retried twice"
        time.sleep(0.1)
    time.sleep(1.5)
    ids = open(tries).read().split()
    assert ids == [request_id] * 3, (request_id, ids)

    # An event invoke config (per qualifier) sets the retries: with none, one failed attempt is all.
    c = lam.put_function_event_invoke_config(FunctionName="b3", Qualifier="1", MaximumRetryAttempts=0)
    assert c["MaximumRetryAttempts"] == 0 and c["FunctionArn"].endswith(":function:b3:1"), c
    assert "MaximumEventAgeInSeconds" not in c, c
    once = os.path.join(tempfile.mkdtemp(), "tries")
    ev = lam.invoke(FunctionName="b3:1", InvocationType="Event", Payload=json.dumps({"tries": once, "fail": True}))
    deadline = time.time() + 30
    while not os.path.exists(once):
        assert time.time() < deadline, "the Event invocation did not run"
        time.sleep(0.1)
    time.sleep(3.5)
    assert len(open(once).read().split()) == 1, "MaximumRetryAttempts=0 was retried"
    # Update merges; Put replaces; Get, List and Delete as Lambda's.
    c = lam.update_function_event_invoke_config(FunctionName="b3", Qualifier="1", MaximumEventAgeInSeconds=120)
    assert (c["MaximumRetryAttempts"], c["MaximumEventAgeInSeconds"]) == (0, 120), c
    c = lam.put_function_event_invoke_config(FunctionName="b3", MaximumEventAgeInSeconds=60)
    assert c["FunctionArn"].endswith(":function:b3:$LATEST") and "MaximumRetryAttempts" not in c, c
    got = lam.get_function_event_invoke_config(FunctionName="b3", Qualifier="1")
    assert (got["MaximumRetryAttempts"], got["MaximumEventAgeInSeconds"]) == (0, 120), got
    listed = lam.list_function_event_invoke_configs(FunctionName="b3")["FunctionEventInvokeConfigs"]
    assert sorted(x["FunctionArn"].rsplit(":", 1)[1] for x in listed) == ["$LATEST", "1"], listed
    lam.delete_function_event_invoke_config(FunctionName="b3")
    expect_error("ResourceNotFoundException", lam.get_function_event_invoke_config, FunctionName="b3")
    expect_error("ResourceNotFoundException", lam.put_function_event_invoke_config, FunctionName="b3",
                 Qualifier="99", MaximumRetryAttempts=1)
    # Out of Lambda's ranges (sent past boto3's own checks): the server's ValidationException.
    raw = boto3.client("lambda", endpoint_url=ENDPOINT, region_name="us-east-1",
                       aws_access_key_id=os.environ["STOKE_AKID"], aws_secret_access_key=os.environ["STOKE_SECRET"],
                       config=Config(retries={"max_attempts": 1}, parameter_validation=False))
    e = expect_error("ValidationException", raw.put_function_event_invoke_config, FunctionName="b3",
                     MaximumRetryAttempts=3)
    assert "maximumRetryAttempts" in e.response["Error"]["Message"], e.response
    expect_error("ValidationException", raw.put_function_event_invoke_config, FunctionName="b3",
                 MaximumEventAgeInSeconds=59)
    # Destinations: a function of the account's, shown back as Lambda shows them (both sides, {} when unset);
    # the function itself, one that does not exist, nothing at all and not an ARN are refused as on Lambda.
    lam.create_function(FunctionName="b3sink", Runtime="python3.12", Role="arn:aws:iam::000000000000:role/x",
                        Handler="app.handler", Code={"ZipFile": zip_of("def handler(e, c):\n    return e\n")})
    sink = lam.get_function(FunctionName="b3sink")["Configuration"]["FunctionArn"]
    c = lam.put_function_event_invoke_config(FunctionName="b3", DestinationConfig={"OnFailure": {"Destination": sink}})
    assert c["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {"Destination": sink}}, c
    c = lam.update_function_event_invoke_config(FunctionName="b3", MaximumRetryAttempts=1)
    assert (c["MaximumRetryAttempts"], c["DestinationConfig"]["OnFailure"]) == (1, {"Destination": sink}), c
    itself = sink.replace(":b3sink", ":b3")
    e = expect_error("InvalidParameterValueException", lam.put_function_event_invoke_config, FunctionName="b3",
                     DestinationConfig={"OnSuccess": {"Destination": itself}})
    assert "can't specify the function as a destination for itself" in e.response["Error"]["Message"], e.response
    e = expect_error("InvalidParameterValueException", lam.put_function_event_invoke_config, FunctionName="b3",
                     DestinationConfig={"OnFailure": {"Destination": sink.replace(":b3sink", ":nope")}})
    assert "is invalid" in e.response["Error"]["Message"], e.response
    e = expect_error("InvalidParameterValueException", lam.put_function_event_invoke_config, FunctionName="b3")
    assert "at least one of error handling or destination setting" in e.response["Error"]["Message"], e.response
    e = expect_error("ValidationException", raw.put_function_event_invoke_config, FunctionName="b3",
                     DestinationConfig={"OnFailure": {"Destination": "b3sink"}})
    assert "destinationConfig.onFailure.destination" in e.response["Error"]["Message"], e.response
    got = lam.get_function_event_invoke_config(FunctionName="b3")
    assert got["DestinationConfig"]["OnFailure"] == {"Destination": sink}, "a refused write changed nothing"
    lam.delete_function_event_invoke_config(FunctionName="b3")
    lam.delete_function(FunctionName="b3sink")

    e = expect_error("ResourceNotFoundException", lam.invoke, FunctionName="nope")
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    # A payload that is not JSON is refused before any instance runs, as Lambda does, sync or Event.
    for kind in ("RequestResponse", "Event"):
        e = expect_error("InvalidRequestContentException", lam.invoke, FunctionName="b3", InvocationType=kind,
                         Payload=b"not json {")
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "Could not parse request body into json" in e.response["Error"]["Message"], e.response
    expect_error("ResourceNotFoundException", lam.get_alias, FunctionName="b3", Name="nope")
    expect_error("ResourceConflictException", lam.create_alias, FunctionName="b3", Name="prod", FunctionVersion="1")
    expect_error("InvalidParameterValueException", lam.update_function_configuration, FunctionName="b3", MemorySize=200)

    bad = client(secret="not-the-secret")
    expect_error("InvalidSignatureException", bad.list_functions)
    stranger = client(key="AKIAUNKNOWN000000000", secret="x")
    expect_error("UnrecognizedClientException", stranger.list_functions)

    # Layers: publish, list, use from CreateFunction by ARN, read back, delete.
    layer_zip = io.BytesIO()
    with zipfile.ZipFile(layer_zip, "w") as z:
        z.writestr("python/b3lib.py", "VALUE = 'from a layer'\n")
    pub = lam.publish_layer_version(LayerName="b3lib", Content={"ZipFile": layer_zip.getvalue()},
                                    Description="boto3's", CompatibleRuntimes=["python3.12"])
    assert pub["Version"] == 1 and pub["LayerVersionArn"].endswith(":layer:b3lib:1"), pub
    assert [l["LayerName"] for l in lam.list_layers()["Layers"]] == ["b3lib"]
    got = lam.get_layer_version(LayerName="b3lib", VersionNumber=1)
    assert got["Description"] == "boto3's" and got["Content"]["CodeSize"] > 0, got
    uses = "import b3lib\ndef handler(event, context):\n    return b3lib.VALUE\n"
    lam.create_function(FunctionName="b3layers", Runtime="python3.12", Role="arn:aws:iam::000000000000:role/x",
                        Handler="app.handler", Code={"ZipFile": zip_of(uses)}, Layers=[pub["LayerVersionArn"]])
    assert lam.get_function(FunctionName="b3layers")["Configuration"]["Layers"][0]["Arn"] == pub["LayerVersionArn"]
    assert json.loads(lam.invoke(FunctionName="b3layers")["Payload"].read()) == "from a layer"
    expect_error("InvalidParameterValueException", lam.create_function, FunctionName="b3nolayer",
                 Runtime="python3.12", Role="arn:aws:iam::000000000000:role/x", Handler="app.handler",
                 Code={"ZipFile": zip_of(uses)}, Layers=[pub["LayerVersionArn"][:-1] + "9"])
    lam.delete_function(FunctionName="b3layers")
    lam.delete_layer_version(LayerName="b3lib", VersionNumber=1)
    assert lam.list_layer_versions(LayerName="b3lib")["LayerVersions"] == []
    expect_error("ResourceNotFoundException", lam.get_layer_version, LayerName="b3lib", VersionNumber=1)

    model_constraints(lam)

    lam.delete_alias(FunctionName="b3", Name="prod")
    lam.delete_function(FunctionName="b3")
    expect_error("ResourceNotFoundException", lam.get_function, FunctionName="b3")
    print("boto3: all checks passed")


def model_constraints(lam):
    """What Lambda's API model refuses before any business rule, and ARNs of other regions: the codes real
    Lambda answers with (issue 28's list, checked against AWS's model and recorded responses)."""
    account = os.environ["STOKE_ACCOUNT"]
    code = {"ZipFile": zip_of(V2)}
    role = "arn:aws:iam::123456789012:role/x"
    expect_error("ValidationException", lam.create_function, FunctionName="b3v", Runtime="python3.12",
                 Role="not-a-role", Handler="app.handler", Code=code)
    for arch in (["x86_64", "arm64"], ["sparc"]):
        expect_error("ValidationException", lam.create_function, FunctionName="b3v", Runtime="python3.12",
                     Role=role, Handler="app.handler", Code=code, Architectures=arch)
    expect_error("ValidationException", lam.update_function_code, FunctionName="b3", ZipFile=zip_of(V2),
                 Architectures=["mips"])
    expect_error("ResourceNotFoundException", lam.get_function, FunctionName="b3v")
    expect_error("ValidationException", lam.create_alias, FunctionName="b3", Name="123", FunctionVersion="1")
    expect_error("ValidationException", lam.invoke, FunctionName="arn:aws:lambda:us-east-1:x:function")
    expect_error("ValidationException", lam.list_layers, CompatibleRuntime="cobol85")
    assert lam.list_layers(CompatibleRuntime="python3.12")["Layers"] is not None
    # Another region's ARN names nothing here.
    e = expect_error("ResourceNotFoundException", lam.get_function,
                     FunctionName="arn:aws:lambda:eu-west-1:%s:function:b3" % account)
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    expect_error("ResourceNotFoundException", lam.get_layer_version,
                 LayerName="arn:aws:lambda:eu-west-1:%s:layer:b3lib" % account, VersionNumber=1)
    # A qualified ARN with the same Qualifier is one reference.
    here = "arn:aws:lambda:us-east-1:%s:function:b3:prod" % account
    assert lam.get_function(FunctionName=here, Qualifier="prod")["Configuration"]["FunctionName"] == "b3"
    expect_error("InvalidParameterValueException", lam.get_function, FunctionName=here, Qualifier="1")
    # An archive over the upload limit (50 MB here) is RequestEntityTooLargeException, as on Lambda.
    big = io.BytesIO()
    with zipfile.ZipFile(big, "w") as z:
        z.writestr("pad.bin", os.urandom(51 * 1024 * 1024), compress_type=zipfile.ZIP_STORED)
    e = expect_error("RequestEntityTooLargeException", lam.update_function_code, FunctionName="b3",
                     ZipFile=big.getvalue())
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 413


if __name__ == "__main__":
    main()
