"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import CallbackError, DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CallbackConfig, Duration

# 4-3: a 5 s timeout and no answer: it times out.
@durable_execution
def handler(event, context: DurableContext):
    return context.create_callback(name=event, config=CallbackConfig(timeout=Duration.from_seconds(5))).result()
