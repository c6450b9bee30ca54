"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import CallbackError, DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, WaitForCallbackConfig
from aws_durable_execution_sdk_python.retries import RetryDecision
from aws_durable_execution_sdk_python.serdes import JsonSerDes

from conformance_helpers import submit


# 7-14: a 3 s timeout, caught: "timed-out-handled".
@durable_execution
def handler(event, context: DurableContext):
    try:
        config = WaitForCallbackConfig(timeout=Duration.from_seconds(3))
        return context.wait_for_callback(submit, name=event, config=config)
    except CallbackError:
        return "timed-out-handled"
