"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, InvokeError, durable_execution
from aws_durable_execution_sdk_python.config import Duration, InvokeConfig

from conformance_helpers import ECHO, FAIL

# 5-10: a failed invoke, caught, then a wait; the replay raises it again from the checkpoint.
@durable_execution
def handler(event, context: DurableContext):
    try:
        context.invoke(FAIL, None)
    except InvokeError:
        pass
    context.wait(Duration.from_seconds(1))
    return "handled"
