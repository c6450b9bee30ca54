"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration


# 2-5: a wait given in hours: checkpointed in seconds.
@durable_execution
def handler(event, context: DurableContext):
    context.wait(Duration.from_hours(1))
