"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets, RetryStrategyConfig, create_retry_strategy

# 1-13: the SDK's default retry strategy: two failures, then success.
@durable_execution
def handler(event, context: DurableContext):
    def unreliable(step: StepContext):
        if step.attempt < 3:
            raise RuntimeError(f"attempt {step.attempt} fails")
        return "succeeded on third attempt"

    return context.step(unreliable, name="unreliable")
