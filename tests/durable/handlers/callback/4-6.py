"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import CallbackError, DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CallbackConfig, Duration

# 4-6: the external system reports a failure, which the handler does not catch.
@durable_execution
def handler(event, context: DurableContext):
    return context.create_callback(name=event).result()
