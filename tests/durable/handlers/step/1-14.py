"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets, RetryStrategyConfig, create_retry_strategy

# 1-14: 2 s, then 6 s (backoff 3, no jitter), then success.
from aws_durable_execution_sdk_python.config import JitterStrategy

strategy = create_retry_strategy(
    RetryStrategyConfig(
        max_attempts=5, initial_delay=Duration.from_seconds(2), backoff_rate=3, jitter_strategy=JitterStrategy.NONE
    )
)


@durable_execution
def handler(event, context: DurableContext):
    def unreliable(step: StepContext):
        if step.attempt < 3:
            raise RuntimeError(f"attempt {step.attempt} fails")
        return "succeeded on third attempt"

    return context.step(unreliable, name="unreliable", config=StepConfig(retry_strategy=strategy))
