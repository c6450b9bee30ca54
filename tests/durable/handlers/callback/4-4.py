"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import CallbackError, DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CallbackConfig, Duration

# 4-4: a 5 s heartbeat timeout and no heartbeat: it times out.
@durable_execution
def handler(event, context: DurableContext):
    config = CallbackConfig(heartbeat_timeout=Duration.from_seconds(5))
    return context.create_callback(name=event, config=config).result()
