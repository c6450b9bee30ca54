"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import CallbackError, DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CallbackConfig, Duration

# 4-12: the callback's result, then a 2 s wait, then the result is returned.
@durable_execution
def handler(event, context: DurableContext):
    result = context.create_callback(name=event).result()
    context.wait(Duration.from_seconds(2))
    return result
