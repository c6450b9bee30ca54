"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, InvokeError, durable_execution
from aws_durable_execution_sdk_python.config import Duration, InvokeConfig

from conformance_helpers import ECHO, FAIL

# 5-1: the echo target's result is returned.
@durable_execution
def handler(event, context: DurableContext):
    return context.invoke(ECHO, event)
