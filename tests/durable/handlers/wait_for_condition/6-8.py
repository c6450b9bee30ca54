"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, JitterStrategy
from aws_durable_execution_sdk_python.waits import (
    WaitForConditionConfig,
    WaitForConditionDecision,
    WaitStrategyConfig,
    create_wait_strategy,
)

from conformance_helpers import until


# 6-8: the check raises; the handler recovers.
def check(state, _):
    raise RuntimeError("the status service is down")


@durable_execution
def handler(event, context: DurableContext):
    try:
        return context.wait_for_condition(check, WaitForConditionConfig(until(1), initial_state=0))
    except Exception:
        return "recovered"
