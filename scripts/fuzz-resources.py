#!/usr/bin/env python3
"""Creates real objects on a running stoke server for scripts/fuzz, and writes the schemathesis.toml that
points each operation's path parameters at them.

Objects a destructive operation (delete, retire, stop) acts on are their own, so that the reads and updates
keep hitting live objects for the whole run.

Usage: fuzz-resources.py ENDPOINT API_KEY FUZZ_CONFIG STATEFUL_CONFIG
       fuzz-resources.py --before-stateful ENDPOINT API_KEY   (removes what the stateful phase must not run)

FUZZ_CONFIG (for the examples, coverage and fuzzing phases) and STATEFUL_CONFIG are appended to.
"""

import base64
import io
import json
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile

BEFORE_STATEFUL = sys.argv[1] == "--before-stateful"
if BEFORE_STATEFUL:
    ENDPOINT, API_KEY = sys.argv[2:4]
else:
    ENDPOINT, API_KEY, FUZZ_CONFIG, STATEFUL_CONFIG = sys.argv[1:5]


def call(method, path, body=None, raw=None, content_type=None, expect=(200, 201, 202, 204)):
    data = None
    headers = {"Authorization": f"Bearer {API_KEY}"}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    elif raw is not None:
        data = raw
        headers["Content-Type"] = content_type or "application/octet-stream"
    req = urllib.request.Request(ENDPOINT + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, text = resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode("utf-8", "replace")
    if status not in expect:
        sys.exit(f"fuzz-resources: {method} {path} answered {status}: {text}")
    return json.loads(text) if text.strip() else None


def zip_of(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def b64(data):
    return base64.b64encode(data).decode()


def python_zip(tag):
    return zip_of({"app.py": f"TAG = {tag!r}\ndef handler(event, context):\n    return {{'tag': TAG, 'event': event}}\n"})


def create_function(name, tag):
    return call("POST", "/v1/functions", {
        "name": name, "runtime": "python3.12", "handler": "app.handler", "code_base64": b64(python_zip(tag)),
    })


def tiny_image():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        marker = b"ID=stoke-fuzz-image\n"
        info = tarfile.TarInfo("etc/os-release")
        info.size, info.mode = len(marker), 0o644
        t.addfile(info, io.BytesIO(marker))
        d = tarfile.TarInfo("usr/bin")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        t.addfile(d)
    return buf.getvalue()


if BEFORE_STATEFUL:
    # The stateful phase finds workflows by listing them, and a synchronous run of `fzwait` (an hour's Wait)
    # would only time out: its execution has served the stop operation, so both go.
    running = call("GET", "/v1/workflows/fzwait/executions?status=RUNNING", expect=(200, 404)) or {}
    for execution in running.get("executions", []):
        call("POST", f"/v1/executions/{execution['id']}/stop", {}, expect=(200, 404, 409))
    call("DELETE", "/v1/workflows/fzwait", expect=(204, 404))
    sys.exit(0)

# Functions: `fz` for reads and updates (a published version 1 and the alias `live`), one each for the
# lifecycle operations, and victims for delete and retire.
create_function("fz", "one")
call("POST", "/v1/functions/fz/versions", {"description": "fuzz v1"})
call("PUT", "/v1/functions/fz/aliases/live", {"version": "1", "description": "fuzz alias"})
call("PUT", "/v1/functions/fz/aliases/doomed", {"version": "1"})
call("POST", "/v1/functions/fz/invoke", {"warm": True})
for name in ["fz-lifecycle", "fz-tune", "fz-delete", "fz-retire"]:
    create_function(name, name)
call("POST", "/v1/functions/fz-lifecycle/versions", {})
call("POST", "/v1/functions/fz-retire/versions", {})

# A tune, small: two sizes, one warm run each.
tune = call("POST", "/v1/functions/fz-tune/tune", {"memory": [128, 256], "runs": 1, "payload": {}})
# Wait for it, so that fuzzing the start of another one on fz-tune is not answered 409 throughout.
deadline = time.time() + 120
while call("GET", f"/v1/tunes/{tune['id']}")["state"] == "running" and time.time() < deadline:
    time.sleep(0.5)

# Layers: `fzlayer` version 1 for reads, `fzlayer-del` version 1 to delete.
layer_zip = b64(zip_of({"python/fzlib.py": "X = 1\n"}))
call("POST", "/v1/layers/fzlayer/versions",
     {"code_base64": layer_zip, "description": "fuzz layer", "compatible_runtimes": ["python3.12"]})
call("POST", "/v1/layers/fzlayer-del/versions", {"code_base64": layer_zip})

# Images (admin only): `fzimg` for reads, `fzimg-del` to delete.
call("PUT", "/v1/images/fzimg", raw=tiny_image(), content_type="application/x-tar")
call("PUT", "/v1/images/fzimg-del", raw=tiny_image(), content_type="application/x-tar")

# Workflows: `fzwf` (a Pass state, so fuzzed runs cost nothing), one finished execution of it; `fzwait`
# with a long Wait, one running execution to stop; `fzwf-del` to delete.
passing = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": {"ok": True}, "End": True}}}
waiting = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}}
call("POST", "/v1/workflows", {"name": "fzwf", "definition": passing})
call("POST", "/v1/workflows", {"name": "fzwait", "definition": waiting})
call("POST", "/v1/workflows", {"name": "fzwf-del", "definition": passing})
done = call("POST", "/v1/workflows/fzwf/run", {"input": {"n": 1}, "name": "fuzz-run"})
# Schedules: one to read, change, enable and disable; one to delete (fires are far off: a yearly cron).
for schedule in ("fzsched", "fzsched-del"):
    call("POST", "/v1/schedules", {"name": schedule, "expression": "cron(0 0 1 1 ? *)", "target": {"function": "fz"}},
         expect=(201, 409))
running = call("POST", "/v1/workflows/fzwait/executions", {"input": {}, "name": "fuzz-wait"})

# HTTP triggers: a URL and a route for reads and patches, another of each to delete.
url = call("POST", "/v1/urls", {"function": "fz", "auth": "key"})
url_del = call("POST", "/v1/urls", {"function": "fz:live", "auth": "none"})
route = call("POST", "/v1/routes", {"route": "GET /fz", "function": "fz", "auth": "key"})
route_del = call("POST", "/v1/routes", {"route": "GET /fz-del", "function": "fz", "auth": "none"})

resources = {
    "function": "fz", "alias": "live", "layer": "fzlayer", "image": "fzimg", "workflow": "fzwf",
    "execution": done["id"], "running_execution": running["id"], "tune": tune["id"],
    "url": url["id"], "url_victim": url_del["id"], "route": route["id"], "route_victim": route_del["id"],
}
print("fuzz-resources: " + json.dumps(resources))


def toml_str(v):
    return json.dumps(str(v))  # a JSON string is a valid TOML basic string


def operation(names, checks=(), **params):
    """An [[operations]] entry for the operations NAMES ("METHOD /path", exactly as the document has them):
    CHECKS are TOML lines about its checks, PARAMS fix its path parameters. Each operation is named in one
    entry only: schemathesis ORs the include filters of an entry and merges every entry that matches."""
    if isinstance(names, str):
        names = [names]
    lines = ["[[operations]]", "include-name = [" + ", ".join(toml_str(n) for n in names) + "]", *checks]
    if params:
        lines.append("[operations.parameters]")
        lines += [f"{toml_str('path.' + k)} = {json.dumps(v)}" for k, v in params.items()]
    return "\n".join(lines) + "\n"


# What the document cannot say, and so no fix of it would make pass. The document states every rule JSON Schema
# can (patterns, lengths, ranges, enums); the server also checks what depends on other fields, on the node, on
# what exists, or on content no schema describes, and answers a request that breaks one of those 400 (naming the
# field). For the operations below, the positive check therefore accepts 400 too (`enabled = false` for one
# operation does not hold against `--checks all`; its statuses do), and schemathesis reports each such case as a
# `validation_mismatch` warning rather than a failure. Each one, and why:
ALLOW_400 = {
    # code_base64 must decode to a zip or tar.gz holding the code; the handler must fit the runtime
    # (module.function unless `provided`) and take at most 128 bytes (the document counts characters);
    # memory_mb, gpu_count and concurrency_limit are capped by the node, and network `none` needs its lean
    # sandbox; gpu_memory_mb and gpu_percentage need a gpu_count, min_warm is at most concurrency_limit; layers
    # and base_image must exist (and a layer be listed once, by name or by ARN); environment names the platform
    # reserves, and 4 KB of names and values in all.
    "POST /v1/functions",
    # As for a create (but the archive), and a patch of only `null`s changes nothing.
    "PATCH /v1/functions/{function}",
    # A valid archive or image is more than "some bytes" (400 invalid_archive / invalid_image), and the image
    # `default` is the host's own.
    "PUT /v1/functions/{function}/code",
    "PUT /v1/images/{name}",
    # code_base64 must decode to a zip or tar.gz that is not empty.
    "POST /v1/layers/{name}/versions",
    # additional_version and additional_weight go together, additional_version is not `version`, and weighted
    # routing is between published versions (`version` not `$LATEST`).
    "PUT /v1/functions/{function}/aliases/{alias}",
    # alias only with apply; memory sizes up to the node's limit.
    "POST /v1/functions/{function}/tune",
    # definition must be a valid Amazon States Language state machine.
    "POST /v1/workflows",
    "PUT /v1/workflows/{name}",
    # on_success / on_failure must name a function or state machine of the caller's account that exists, and not
    # the function itself.
    "PUT /v1/functions/{function}/event-configs/{qualifier}",
    # expression must parse as rate(), cron() or at(); timezone must be an IANA zone; the target must exist in
    # the caller's account; end after start.
    "POST /v1/schedules",
    "PUT /v1/schedules/{name}",
    # cors: allow_credentials with the origin `*`; function: an alias qualifier over 128 characters (the pattern
    # bounds only the whole reference, at 256).
    "POST /v1/urls",
    # As for a URL; route: a parameter name twice, or a path over 512 bytes.
    "POST /v1/routes",
    # cors: allow_credentials with the origin `*`.
    "PATCH /v1/urls/{id}",
    "PATCH /v1/routes/{id}",
}
# A body too large for the server's limit (413) is possible only for the binary bodies.
ALLOW_413 = {"PUT /v1/functions/{function}/code", "PUT /v1/images/{name}"}
# A `revision` the alias is not at is rightly refused with the documented 412.
ALLOW_412 = {"PUT /v1/functions/{function}/aliases/{alias}"}
# schemathesis' default for positive_data_acceptance.
POSITIVE_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]


def checks_of(name):
    """The check settings of the operation NAME: the statuses its positive cases may get."""
    extra = [status for status, ops in (("400", ALLOW_400), ("412", ALLOW_412), ("413", ALLOW_413)) if name in ops]
    if not extra:
        return []
    statuses = ", ".join(json.dumps(s) for s in sorted(POSITIVE_STATUSES + extra))
    return [f"checks.positive_data_acceptance.expected-statuses = [{statuses}]"]


def each(names, **params):
    """One [[operations]] entry per operation of NAMES, each with its own check settings and PARAMS."""
    return [operation(name, checks_of(name), **params) for name in names]


F = "/v1/functions/{function}"
ops = [
    # Functions: reads and updates on fz; lifecycle on fz-lifecycle; tune on fz-tune; victims.
    *each([f"GET {F}", f"PATCH {F}", f"GET {F}/aliases", f"GET {F}/code", f"PUT {F}/code", f"GET {F}/logs",
           f"GET {F}/versions", f"POST {F}/versions", f"POST {F}/invoke"], function="fz"),
    *each([f"DELETE {F}"], function="fz-delete"),
    *each([f"POST {F}/block", f"POST {F}/unblock"], function="fz-lifecycle"),
    *each([f"POST {F}/retire"], function="fz-retire"),
    *each([f"POST {F}/tune"], function="fz-tune"),
    *each([f"GET {F}/aliases/{{alias}}", f"PUT {F}/aliases/{{alias}}"], function="fz", alias="live"),
    *each([f"PUT {F}/event-configs/{{qualifier}}"], function="fz", qualifier="$LATEST"),
    *each([f"DELETE {F}/aliases/{{alias}}"], function="fz", alias="doomed"),
    # Layers.
    *each(["GET /v1/layers/{name}/versions", "POST /v1/layers/{name}/versions"], name="fzlayer"),
    *each(["GET /v1/layers/{name}/versions/{version}"], name="fzlayer", version=1),
    *each(["DELETE /v1/layers/{name}/versions/{version}"], name="fzlayer-del", version=1),
    # Images.
    *each(["GET /v1/images/{name}"], name="fzimg"),
    *each(["PUT /v1/images/{name}"], name="fzimg-new"),
    *each(["DELETE /v1/images/{name}"], name="fzimg-del"),
    # Workflows and executions.
    *each(["GET /v1/workflows/{name}", "PUT /v1/workflows/{name}", "GET /v1/workflows/{name}/executions",
           "POST /v1/workflows/{name}/executions", "POST /v1/workflows/{name}/run"], name="fzwf"),
    *each(["DELETE /v1/workflows/{name}"], name="fzwf-del"),
    *each(["GET /v1/executions/{id}", "GET /v1/executions/{id}/cost", "GET /v1/executions/{id}/history",
           "GET /v1/executions/{id}/timeline"], id=done["id"]),
    *each(["POST /v1/executions/{id}/stop"], id=running["id"]),
    # Schedules.
    *each(["GET /v1/schedules/{name}", "PUT /v1/schedules/{name}", "POST /v1/schedules/{name}/enable",
           "POST /v1/schedules/{name}/disable", "GET /v1/schedules/{name}/next"], name="fzsched"),
    *each(["DELETE /v1/schedules/{name}"], name="fzsched-del"),
    # Tunes.
    *each(["GET /v1/tunes/{id}"], id=tune["id"]),
    # HTTP triggers.
    *each(["GET /v1/urls/{id}", "PATCH /v1/urls/{id}"], id=url["id"]),
    *each(["DELETE /v1/urls/{id}"], id=url_del["id"]),
    *each(["GET /v1/routes/{id}", "PATCH /v1/routes/{id}"], id=route["id"]),
    *each(["DELETE /v1/routes/{id}"], id=route_del["id"]),
    # Operations without path parameters, for their check settings.
    *each(["POST /v1/functions", "POST /v1/workflows", "POST /v1/urls", "POST /v1/routes", "POST /v1/schedules"]),
]
with open(FUZZ_CONFIG, "a") as out:
    out.write("\n" + "\n".join(ops))

# The stateful phase follows links from what its own requests create: fixed path parameters would override
# the ids it got (a DELETE of a URL it just created would go to an already deleted one), so its config has
# only the check settings.
stateful = each(sorted(ALLOW_400 | ALLOW_412 | ALLOW_413))
with open(STATEFUL_CONFIG, "a") as out:
    out.write("\n" + "\n".join(stateful))
