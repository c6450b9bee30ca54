"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import CallbackError, DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, WaitForCallbackConfig
from aws_durable_execution_sdk_python.retries import RetryDecision
from aws_durable_execution_sdk_python.serdes import JsonSerDes

from conformance_helpers import submit


# 7-7: the submitter always raises; two attempts a second apart, then the operation fails.
def submit_fails(callback_id, _):
    raise RuntimeError("the submitter cannot reach the approver")


def two_attempts(error, attempts):
    return RetryDecision.retry(Duration.from_seconds(1)) if attempts < 2 else RetryDecision.no_retry()


@durable_execution
def handler(event, context: DurableContext):
    config = WaitForCallbackConfig(retry_strategy=two_attempts)
    return context.wait_for_callback(submit_fails, name=event, config=config)
