"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import CallbackError, DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CallbackConfig, Duration

# 4-7: a callback, then a step, then its (failed) result.
@durable_execution
def handler(event, context: DurableContext):
    callback = context.create_callback(name=event)
    context.step(lambda _: "work", name="work")
    return callback.result()
