"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration


# 2-4: a wait given in minutes: checkpointed in seconds.
@durable_execution
def handler(event, context: DurableContext):
    context.wait(Duration.from_minutes(1))
