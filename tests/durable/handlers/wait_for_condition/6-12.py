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


# 6-12: the final state feeds a step.
@durable_execution
def handler(event, context: DurableContext):
    n = context.wait_for_condition(lambda n, _: n + 1, WaitForConditionConfig(until(event), initial_state=0))
    return context.step(lambda _: n * 10, name="multiply")
