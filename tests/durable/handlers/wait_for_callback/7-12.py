"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import CallbackError, DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, WaitForCallbackConfig
from aws_durable_execution_sdk_python.retries import RetryDecision
from aws_durable_execution_sdk_python.serdes import JsonSerDes

from conformance_helpers import submit


# 7-12: a 5 s heartbeat timeout and no heartbeat: it fails.
@durable_execution
def handler(event, context: DurableContext):
    config = WaitForCallbackConfig(heartbeat_timeout=Duration.from_seconds(5))
    return context.wait_for_callback(submit, name=event, config=config)
