"""stoke's Python runtime: speaks the Lambda Runtime API with the standard library only.

Gives handlers Lambda's signature handler(event, context), its context object, and its error shapes.
"""
import importlib
import json
import logging
import os
import socket
import sys
import time
import traceback


def take_assignment():
    """A generic instance starts this runtime before its function is known, and gives it the function on
    stdin: NUL-terminated items tagged p (program), a (argument), c (working directory) and e (KEY=VALUE of
    the environment), ended by an empty item. The environment replaces this process's; PYTHONPATH, which
    the interpreter read at its start, is applied to sys.path here."""
    data = b""
    while not (data == b"\0" or data.endswith(b"\0\0")):
        chunk = os.read(0, 65536)
        if not chunk:
            sys.exit("stoke: the generic instance's assignment pipe closed before its function came")
        data += chunk
    env, cwd = {}, None
    for item in data.split(b"\0")[:-1]:
        if not item:
            break
        tag, rest = item[:1], item[1:].decode("utf-8", "surrogateescape")
        if tag == b"e":
            key, _, value = rest.partition("=")
            env[key] = value
        elif tag == b"c":
            cwd = rest
    os.environ.clear()
    os.environ.update(env)
    for entry in reversed([p for p in env.get("PYTHONPATH", "").split(":") if p]):
        sys.path.insert(1, entry)
    if cwd:
        os.chdir(cwd)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)


if os.environ.get("STOKE_GENERIC") == "1":
    take_assignment()

# The invocation running now: stamped on JSON log records.
REQUEST_ID = None
# Lambda's log levels, as AWS_LAMBDA_LOG_LEVEL names them, to Python's.
LEVELS = {"TRACE": 5, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING,
          "ERROR": logging.ERROR, "FATAL": logging.CRITICAL}
LEVEL_NAMES = {"WARNING": "WARN", "CRITICAL": "FATAL", "Level 5": "TRACE"}


class JsonFormatter(logging.Formatter):
    """Lambda's JSON log format (`LoggingConfig.LogFormat: JSON`): a JSON object a record, with the record's
    extra fields beside Lambda's own."""

    STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}

    def format(self, record):
        out = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + ".%03dZ" % record.msecs,
            "level": LEVEL_NAMES.get(record.levelname, record.levelname),
            "message": record.getMessage(),
            "logger": record.name,
        }
        if REQUEST_ID:
            out["requestId"] = REQUEST_ID
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            out["errorType"] = type(exc).__name__
            out["errorMessage"] = str(exc)
            out["stackTrace"] = traceback.format_tb(exc.__traceback__)
        for key, value in vars(record).items():
            if key not in self.STANDARD and not key.startswith("_") and key not in out:
                out[key] = value
        return json.dumps(out, default=str)


def setup_logging():
    """With LogFormat JSON, Python's logging writes JSON records to stdout at AWS_LAMBDA_LOG_LEVEL (default
    INFO), as Lambda's runtime does; with Text, logging is left as Python has it."""
    if os.environ.get("AWS_LAMBDA_LOG_FORMAT", "").upper() != "JSON":
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(LEVELS.get(os.environ.get("AWS_LAMBDA_LOG_LEVEL", "INFO").upper(), logging.INFO))


setup_logging()

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
HOST, _, PORT = API.partition(":")
PREFIX = "/2018-06-01/runtime"


class RuntimeApiConnection:
    """One kept-alive HTTP/1.1 connection to the Runtime API, spoken directly over its socket: a request is one
    write, and a response is its status line, its headers and a Content-Length (or chunked) body. The
    standard library's http.client costs this process several times more per invocation (it parses every
    response's headers with the email package)."""

    def __init__(self, host, port):
        self.address = (host, port)
        self.host = ("Host: %s:%d\r\n" % (host, port)).encode("latin-1")
        self.sock = None
        self.pending = b""

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.pending = b""

    def _recv(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the Runtime API closed the connection")
        self.pending += chunk

    def _take(self, n):
        while len(self.pending) < n:
            self._recv()
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def _line(self):
        while b"\r\n" not in self.pending:
            self._recv()
        line, _, self.pending = self.pending.partition(b"\r\n")
        return line

    def request(self, method, path, body=None, headers=None):
        """(status, headers with lower-case names, body bytes)."""
        if self.sock is None:
            self.sock = socket.create_connection(self.address)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(body, str):
            body = body.encode("utf-8")
        body = body or b""
        head = [b"%s %s HTTP/1.1\r\n" % (method.encode("ascii"), path.encode("utf-8")), self.host]
        for name, value in (headers or {}).items():
            head.append(("%s: %s\r\n" % (name, value)).encode("latin-1"))
        head.append(b"Content-Length: %d\r\n\r\n" % len(body))
        self.sock.sendall(b"".join(head) + body)
        while b"\r\n\r\n" not in self.pending:
            self._recv()
        raw, _, self.pending = self.pending.partition(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if "content-length" in fields:
            data = self._take(int(fields["content-length"]))
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self._line().split(b";", 1)[0], 16)
                if size == 0:
                    while self._line():  # trailers, up to the empty line
                        pass
                    break
                parts.append(self._take(size))
                self._take(2)
            data = b"".join(parts)
        else:
            data = b""
        if fields.get("connection", "").lower() == "close":
            self.close()
        return status, fields, data


CONN = RuntimeApiConnection(HOST, int(PORT or 80))


def request(method, path, body=None, headers=None):
    """Sends a request to the Runtime API, once more on a new connection if the kept one was lost."""
    for attempt in (0, 1):
        try:
            return CONN.request(method, PREFIX + path, body, headers)
        except (ConnectionError, ValueError, IndexError):
            CONN.close()
            if attempt:
                raise


class MarshalError(Exception):
    """The handler's result cannot be written as JSON (Lambda's Runtime.MarshalError)."""


def error_body(exc, request_id=""):
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": request_id,
        # The function's own frames only, as on Lambda: this bootstrap's are not the user's code.
        "stackTrace": traceback.format_list(
            [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
        ),
    }


def init_error(error_type, exc):
    body = error_body(exc)
    body["errorType"] = error_type
    print("[ERROR] %s: %s" % (error_type, exc), file=sys.stderr, flush=True)
    request("POST", "/init/error", json.dumps(body), {"Lambda-Runtime-Function-Error-Type": error_type})
    sys.exit(1)


class Context:
    def __init__(self, request_id, deadline_ms, arn, client_context, identity):
        self.aws_request_id = request_id
        self.invoked_function_arn = arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.client_context = client_context
        self.identity = identity
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(0, int(self._deadline_ms - time.time() * 1000))


def load_handler():
    spec = os.environ.get("_HANDLER", "")
    module_name, _, func_name = spec.rpartition(".")
    if not module_name or not func_name:
        init_error("Runtime.MalformedHandlerName", ValueError("Bad handler '%s': use module.function" % spec))
    root = os.environ.get("LAMBDA_TASK_ROOT", os.getcwd())
    sys.path.insert(0, root)  # then PYTHONPATH: the layers' python/lib/python3.N/site-packages and python/
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except SyntaxError as exc:
        init_error("Runtime.UserCodeSyntaxError", exc)
    except ImportError as exc:
        init_error("Runtime.ImportModuleError", ImportError("Unable to import module '%s': %s" % (module_name, exc)))
    except Exception as exc:  # the module's own init code failed
        init_error("Runtime.InitError", exc)
    handler = getattr(module, func_name, None)
    if handler is None:
        init_error("Runtime.HandlerNotFound", AttributeError("Handler '%s' missing on module '%s'" % (func_name, module_name)))
    return handler


def main():
    global REQUEST_ID
    handler = load_handler()
    while True:
        _, fields, body = request("GET", "/invocation/next")
        request_id = fields.get("lambda-runtime-aws-request-id")
        REQUEST_ID = request_id
        trace = fields.get("lambda-runtime-trace-id")
        if trace:
            os.environ["_X_AMZN_TRACE_ID"] = trace
        cc = fields.get("lambda-runtime-client-context")
        identity = fields.get("lambda-runtime-cognito-identity")
        ctx = Context(
            request_id,
            int(fields.get("lambda-runtime-deadline-ms") or 0),
            fields.get("lambda-runtime-invoked-function-arn"),
            json.loads(cc) if cc else None,
            json.loads(identity) if identity else None,
        )
        try:
            event = json.loads(body) if body else {}
        except ValueError as exc:
            err = error_body(exc, request_id)
            err["errorType"] = "Runtime.UnmarshalError"
            request("POST", "/invocation/%s/error" % request_id, json.dumps(err), {"Content-Type": "application/json"})
            continue
        try:
            result = handler(event, ctx)
            if isinstance(result, (bytes, bytearray)):
                # As on Lambda: bytes are the response's body as they are.
                out = bytes(result)
            else:
                try:
                    out = json.dumps(result)
                except (TypeError, ValueError) as exc:
                    raise MarshalError("Unable to marshal response: %s" % exc) from None
            sys.stdout.flush()
            request("POST", "/invocation/%s/response" % request_id, out, {"Content-Type": "application/json"})
        except Exception as exc:
            err = error_body(exc, request_id)
            if isinstance(exc, MarshalError):
                err["errorType"] = "Runtime.MarshalError"
            print("[ERROR] %s: %s" % (err["errorType"], err["errorMessage"]), file=sys.stderr, flush=True)
            request("POST", "/invocation/%s/error" % request_id, json.dumps(err), {"Content-Type": "application/json"})


if __name__ == "__main__":
    main()
