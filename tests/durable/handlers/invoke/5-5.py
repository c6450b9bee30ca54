"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, InvokeError, durable_execution
from aws_durable_execution_sdk_python.config import Duration, InvokeConfig

from conformance_helpers import ECHO, FAIL

# 5-5: the target fails; the error is not caught.
@durable_execution
def handler(event, context: DurableContext):
    return context.invoke(FAIL, None)
