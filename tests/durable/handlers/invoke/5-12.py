"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, InvokeError, durable_execution
from aws_durable_execution_sdk_python.config import Duration, InvokeConfig

from conformance_helpers import ECHO, FAIL

# 5-12: an invoke, then a step given its result.
@durable_execution
def handler(event, context: DurableContext):
    value = context.invoke(ECHO, "from-invoke")
    return context.step(lambda _: value.upper(), name="process")
