"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, InvokeError, durable_execution
from aws_durable_execution_sdk_python.config import Duration, InvokeConfig

from conformance_helpers import ECHO, FAIL

# 5-11: a step, then an invoke given its result.
@durable_execution
def handler(event, context: DurableContext):
    value = context.step(lambda _: "from-step", name="prepare")
    return context.invoke(ECHO, value)
