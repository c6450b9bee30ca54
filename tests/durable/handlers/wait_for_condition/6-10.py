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


# 6-10: the check returns nothing and polling stops at once.
@durable_execution
def handler(event, context: DurableContext):
    config = WaitForConditionConfig(lambda state, attempts: WaitForConditionDecision.stop_polling(), initial_state=None)
    return context.wait_for_condition(lambda state, _: None, config)
