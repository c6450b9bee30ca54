"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import CallbackError, DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CallbackConfig, Duration

# 4-13: a failed callback is caught, then a 2 s wait, then the message.
@durable_execution
def handler(event, context: DurableContext):
    try:
        message = context.create_callback(name=event).result()
    except CallbackError as e:
        message = f"callback failed: {e}"
    context.wait(Duration.from_seconds(2))
    return message
