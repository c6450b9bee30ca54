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


# 6-6: never met; a fixed-delay strategy of at most 3 attempts fails.
strategy = create_wait_strategy(
    WaitStrategyConfig(
        should_continue_polling=lambda n: True,
        max_attempts=3,
        initial_delay=Duration.from_seconds(1),
        backoff_rate=1,
        jitter_strategy=JitterStrategy.NONE,
    )
)


@durable_execution
def handler(event, context: DurableContext):
    return context.wait_for_condition(lambda n, _: n + 1, WaitForConditionConfig(strategy, initial_state=event))
