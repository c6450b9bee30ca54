"""stoke's runtime interfaces for Python functions (seed 000): a workflow step prepares a later step's
instance; the prepared instance does its own preparation, then waits for its turn.

    import stoke

    def handler(event, context):          # the step that runs first
        stoke.prepare("webp", {"key": event["key"]})
        ...

    def handler(event, context):          # the prepared step
        params = stoke.prepared_params()  # None when this invocation was not prepared
        if params is not None:
            image = download(params["key"])     # while the earlier step still runs
            event = stoke.wait_turn()           # the step's input, once the workflow reaches it
        else:
            image = download(event["key"])
        ...

Standard library only. It is importable in stoke's python runtime as is; a function that brings its own
runtime client (awslambdaric) copies this file into its archive.
"""
import http.client
import json
import os
import urllib.parse

__all__ = ["prepare", "prepared_params", "wait_turn", "is_available", "scratch", "origin", "StokeError",
           "ReservationReleased"]

PREFIX = "/2018-06-01/stoke"


class StokeError(Exception):
    """The platform refused a request; `error_type` is its machine-readable code."""

    def __init__(self, error_type, message, status=None):
        super().__init__("%s: %s" % (error_type, message))
        self.error_type = error_type
        self.message = message
        self.status = status


class ReservationReleased(StokeError):
    """The prepared instance's turn will not come: the reservation expired, or the execution took another
    branch or ended. The invocation should end; the instance returns to its pool."""


def _call(method, path, body=None):
    api = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if not api:
        raise StokeError("Stoke.NoRuntimeApi", "AWS_LAMBDA_RUNTIME_API is not set: not running on stoke")
    host, _, port = api.partition(":")
    conn = http.client.HTTPConnection(host, int(port or 80))
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, PREFIX + path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    if resp.status >= 400:
        try:
            doc = json.loads(data)
        except ValueError:
            doc = {}
        error_type = doc.get("errorType", "Stoke.Error")
        message = doc.get("errorMessage", data.decode("utf-8", "replace"))
        cls = ReservationReleased if error_type == "Stoke.ReservationReleased" else StokeError
        raise cls(error_type, message, resp.status)
    return resp.status, data


def prepare(function, params=None):
    """Reserves an instance of `function` (name, name:qualifier or ARN) for a later step of this workflow
    execution and starts it with `params` as its preparation input. Returns the reservation
    ({"reservationId", "function", "version", "expiresInMs"})."""
    _, data = _call("POST", "/prepare", json.dumps({"function": function, "params": params}))
    return json.loads(data)


def origin():
    """During init (module level): the workflow step this instance was started for, as
    {"execution", "event", "prepared"}, or None when it was started for no workflow step. A cold step can
    prepare the next one before its own heavy imports, so both cold starts overlap:

        o = stoke.origin()
        if o is not None:
            stoke.prepare("webp", {"key": o["event"]["key"]})
        import heavy_library

    Another instance may still take that step; the reservation stays the execution's either way."""
    try:
        _, data = _call("GET", "/origin")
    except StokeError as e:
        if e.error_type == "Stoke.NoOrigin":
            return None
        raise
    return json.loads(data)


def prepared_params():
    """Inside a prepared instance, the preparation input given to `prepare`; None when the running
    invocation is not a preparation (it is the step itself, and its event is the step's input)."""
    try:
        _, data = _call("GET", "/prepared")
    except StokeError as e:
        if e.error_type == "Stoke.NotPrepared":
            return None
        raise
    return json.loads(data) if data else None


def wait_turn():
    """Inside a prepared instance: blocks until the workflow reaches this instance's step and returns the
    step's input. Raises ReservationReleased when the turn will not come."""
    _, data = _call("GET", "/turn")
    return json.loads(data) if data else {}


def is_available(function):
    """True when idle instances of `function` outnumber the invocations queued for it (a step invoking it
    now would not wait for a cold start)."""
    _, data = _call("GET", "/available/" + urllib.parse.quote(function, safe=":"))
    return bool(json.loads(data).get("available"))


def scratch():
    """The directory the steps of this workflow execution share on this node (the execution was started
    with scratch on): a later step finds there what an earlier one wrote. None when there is none."""
    try:
        _, data = _call("GET", "/scratch")
    except StokeError as e:
        if e.error_type == "Stoke.NoScratch":
            return None
        raise
    return json.loads(data)["path"]
