"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import CallbackError, DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CallbackConfig, Duration

# 4-8: a callback with a 5 s timeout, then a step, then its result: it times out.
@durable_execution
def handler(event, context: DurableContext):
    callback = context.create_callback(name=event, config=CallbackConfig(timeout=Duration.from_seconds(5)))
    context.step(lambda _: "work", name="work")
    return callback.result()
