"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, InvokeError, durable_execution
from aws_durable_execution_sdk_python.config import Duration, InvokeConfig

from conformance_helpers import ECHO, FAIL

# 5-7: a large payload (about 200 KB).
@durable_execution
def handler(event, context: DurableContext):
    result = context.invoke(ECHO, {"data": "x" * 200_000})
    return {"received": len(result["data"])}
