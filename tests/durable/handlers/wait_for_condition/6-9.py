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


# 6-9: an object as the state: PENDING until two attempts, then DONE.
def check(state, _):
    attempts = state["attempts"] + 1
    return {"status": "DONE" if attempts >= 2 else "PENDING", "attempts": attempts}


def strategy(state, attempts):
    if state["status"] == "PENDING":
        return WaitForConditionDecision.continue_waiting(Duration.from_seconds(1))
    return WaitForConditionDecision.stop_polling()


@durable_execution
def handler(event, context: DurableContext):
    config = WaitForConditionConfig(strategy, initial_state={"status": "PENDING", "attempts": 0})
    return context.wait_for_condition(check, config)
