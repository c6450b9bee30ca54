"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets, RetryStrategyConfig, create_retry_strategy

# 1-19: a step that always raises, with no retries.
@durable_execution
def handler(event, context: DurableContext):
    def failing(_: StepContext):
        raise RuntimeError("this step always fails")

    return context.step(failing, name="failing", config=StepConfig(retry_strategy=RetryPresets.none()))
