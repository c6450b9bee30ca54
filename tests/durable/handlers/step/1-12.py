"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets, RetryStrategyConfig, create_retry_strategy

# 1-12: four attempts, a second apart, all fail.
def four_attempts(error, attempts):
    return RetryDecision.retry(Duration.from_seconds(1)) if attempts < 4 else RetryDecision.no_retry()


@durable_execution
def handler(event, context: DurableContext):
    def always_fail(_: StepContext):
        raise RuntimeError("always fails")

    return context.step(always_fail, name="always_fail", config=StepConfig(retry_strategy=four_attempts))
