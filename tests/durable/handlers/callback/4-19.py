"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import CallbackError, DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CallbackConfig, Duration

# 4-19: callbacks A and B, then B's result, then A's.
@durable_execution
def handler(event, context: DurableContext):
    a = context.create_callback(name=event[0])
    b = context.create_callback(name=event[1])
    second = b.result()
    first = a.result()
    return [first, second]
