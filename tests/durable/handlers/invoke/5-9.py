"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, InvokeError, durable_execution
from aws_durable_execution_sdk_python.config import Duration, InvokeConfig

from conformance_helpers import ECHO, FAIL

# 5-9: an invoke, then a wait; the replay does not invoke again.
@durable_execution
def handler(event, context: DurableContext):
    result = context.invoke(ECHO, "cached")
    context.wait(Duration.from_seconds(1))
    return result
