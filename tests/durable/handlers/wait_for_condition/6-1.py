"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, JitterStrategy
from aws_durable_execution_sdk_python.waits import (
    WaitForConditionConfig,
    WaitForConditionDecision,
    WaitStrategyConfig,
    create_wait_strategy,
)


def until(threshold, seconds=1):
    """Polls again a fixed time later while the state is below the threshold."""

    def strategy(state, attempts):
        if state >= threshold:
            return WaitForConditionDecision.stop_polling()
        return WaitForConditionDecision.continue_waiting(Duration.from_seconds(seconds))

    return strategy

# 6-1: a counter from 0, polled until it reaches the input.
@durable_execution
def handler(event, context: DurableContext):
    return context.wait_for_condition(lambda n, _: n + 1, WaitForConditionConfig(until(event), initial_state=0))
