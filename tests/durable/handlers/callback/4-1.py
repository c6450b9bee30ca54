"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import CallbackError, DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CallbackConfig, Duration

# 4-1: a callback named by the input; its result is returned.
@durable_execution
def handler(event, context: DurableContext):
    return context.create_callback(name=event).result()
