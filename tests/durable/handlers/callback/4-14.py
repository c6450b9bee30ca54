"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import CallbackError, DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CallbackConfig, Duration

# 4-14: a timed-out callback (3 s) is caught, then a 2 s wait.
@durable_execution
def handler(event, context: DurableContext):
    try:
        message = context.create_callback(name=event, config=CallbackConfig(timeout=Duration.from_seconds(3))).result()
    except CallbackError as e:
        message = f"callback timed out: {e}"
    context.wait(Duration.from_seconds(2))
    return message
